"""Build a WN18RR-style link-prediction graph from the installed WordNet 3.0 (Debian `wordnet-base`).

    apt-get install -y wordnet-base
    python examples/make_wordnet_kg.py                      # into runs/data/wordnet/ (ignored by git)
    python examples/make_wordnet_kg.py --out DIR --seed 7

Reads the `data.noun|verb|adj|adv` files under /usr/share/wordnet (never downloads) and writes
`train.tsv`, `validation.tsv`, `test.tsv` (head, relation, tail; header row) and `entities.tsv`
(id, text), the files `task: {type: kg-completion}` reads (docs/kg.md).

As WN18RR (Dettmers et al., 2018) did, only 11 relation types are kept, and of each pair of inverse
relations only one direction (hypernym, not hyponym; member meronym, not member holonym; ...), so
a test triple can never be answered by reading its inverse off the training set. The symmetric
relations (derivationally related form, also see, verb group, similar to) go into one split per
unordered pair, both directions together, for the same reason. Validation and test triples whose
head or tail is not in a training triple are moved to training (the filtered protocol ranks only
entities the model was trained on). The split is seeded, with WN18RR's proportions
(86,835 / 3,034 / 3,134 of 93,003 triples). By default only the 3-core of the graph is kept (every
entity in at least 3 triples), which lands near WN18RR's size (about 38,000 entities). How this differs from the published files: docs/kg.md.

Only the standard library is used.
"""
from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
# WordNet pointer symbol -> WN18RR relation, in the direction WN18RR keeps.
RELATIONS = {
    "@": "_hypernym",
    "@i": "_instance_hypernym",
    "+": "_derivationally_related_form",
    "^": "_also_see",
    "%m": "_member_meronym",
    "%p": "_has_part",
    ";c": "_synset_domain_topic_of",
    "-u": "_member_of_domain_usage",
    "-r": "_member_of_domain_region",
    "$": "_verb_group",
    "&": "_similar_to",
}
SYMMETRIC = {"_derivationally_related_form", "_also_see", "_verb_group", "_similar_to"}
WN18RR_SIZES = {"train": 86835, "validation": 3034, "test": 3134}


def parse_synset(line: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(entity id, "lemma, lemma: gloss", [(pointer symbol, target id)]) of one data-file line."""
    body, _, gloss = line.partition(" | ")
    fields = body.split()
    offset, pos = fields[0], fields[2]
    pos = "a" if pos == "s" else pos  # satellite adjectives live in data.adj beside head adjectives
    n_words = int(fields[3], 16)
    lemmas = [fields[4 + 2 * i].replace("_", " ") for i in range(n_words)]
    lemmas = [lemma.split("(")[0] for lemma in lemmas]  # "lemma(a)": adjective position markers
    at = 4 + 2 * n_words
    n_pointers = int(fields[at])
    pointers = []
    for i in range(n_pointers):
        symbol, target, target_pos = fields[at + 1 + 4 * i: at + 4 + 4 * i]
        target_pos = "a" if target_pos == "s" else target_pos
        pointers.append((symbol, f"{target}.{target_pos}"))
    text = f"{', '.join(dict.fromkeys(lemmas))}: {gloss.strip()}"
    return f"{offset}.{pos}", text, pointers


def read_wordnet(root: Path) -> tuple[dict[str, str], set[tuple[str, str, str]]]:
    """Every synset's text and every kept triple (head, relation, tail), self-loops dropped."""
    texts: dict[str, str] = {}
    triples: set[tuple[str, str, str]] = set()
    for name in DATA_FILES:
        path = root / name
        if not path.is_file():
            raise SystemExit(f"{path} not found: install WordNet with `apt-get install -y wordnet-base`")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):  # the licence header
                continue
            entity, text, pointers = parse_synset(line)
            texts[entity] = text
            for symbol, target in pointers:
                relation = RELATIONS.get(symbol)
                if relation is not None and target != entity:
                    triples.add((entity, relation, target))
    return texts, triples


def k_core(triples: set[tuple[str, str, str]], min_degree: int) -> set[tuple[str, str, str]]:
    """The triples among entities that each take part in at least `min_degree` of them (repeated
    until stable): WN18 kept a well-connected part of WordNet, not every rare synset."""
    while True:
        degree: dict[str, int] = defaultdict(int)
        for head, _, tail in triples:
            degree[head] += 1
            degree[tail] += 1
        kept = {tr for tr in triples if degree[tr[0]] >= min_degree and degree[tr[2]] >= min_degree}
        if kept == triples:
            return kept
        triples = kept


def units(triples: set[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    """Groups that go to one split together: a symmetric pair's two directions, else one triple."""
    grouped: dict[tuple, list] = defaultdict(list)
    for head, relation, tail in sorted(triples):
        key = (relation, *sorted((head, tail))) if relation in SYMMETRIC else (head, relation, tail)
        grouped[key].append((head, relation, tail))
    return list(grouped.values())


def split(triples: set[tuple[str, str, str]], seed: int) -> dict[str, list[tuple[str, str, str]]]:
    groups = units(triples)
    random.Random(seed).shuffle(groups)
    total = sum(WN18RR_SIZES.values())
    n_valid = round(len(triples) * WN18RR_SIZES["validation"] / total)
    n_test = round(len(triples) * WN18RR_SIZES["test"] / total)
    parts: dict[str, list] = {"validation": [], "test": [], "train": []}
    for group in groups:
        role = ("validation" if len(parts["validation"]) < n_valid else
                "test" if len(parts["test"]) < n_test else "train")
        parts[role] += group
    seen = {e for h, _, t in parts["train"] for e in (h, t)}
    for role in ("validation", "test"):  # held-out triples must rank entities training has seen
        unseen = [tr for tr in parts[role] if tr[0] not in seen or tr[2] not in seen]
        parts[role] = [tr for tr in parts[role] if tr[0] in seen and tr[2] in seen]
        parts["train"] += unseen
        seen |= {e for h, _, t in unseen for e in (h, t)}
    return {role: sorted(rows) for role, rows in parts.items()}


def write_tsv(path: Path, header: tuple[str, ...], rows) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("\t".join(header) + "\n")
        for row in rows:
            out.write("\t".join(cell.replace("\t", " ") for cell in row) + "\n")


def build(root: Path, out: Path, seed: int, min_degree: int = 3) -> dict[str, int]:
    texts, triples = read_wordnet(root)
    triples = k_core(triples, min_degree)
    parts = split(triples, seed)
    used = sorted({e for rows in parts.values() for h, _, t in rows for e in (h, t)})
    out.mkdir(parents=True, exist_ok=True)
    for role, rows in parts.items():
        write_tsv(out / f"{role}.tsv", ("head", "relation", "tail"), rows)
    write_tsv(out / "entities.tsv", ("id", "text"), [(e, texts[e]) for e in used])
    return {"entities": len(used), "relations": len({r for _, r, _ in triples}),
            **{role: len(rows) for role, rows in parts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", type=Path, default=WORDNET, help="folder holding data.noun etc.")
    parser.add_argument("--out", type=Path, default=Path("runs/data/wordnet"))
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--min-degree", type=int, default=3,
                        help="keep entities in at least this many triples (3: about WN18RR's 40,943 entities)")
    args = parser.parse_args()
    counts = build(args.wordnet, args.out, args.seed, args.min_degree)
    print(", ".join(f"{k}: {v:,}" for k, v in counts.items()), f"-> {args.out}")


if __name__ == "__main__":
    main()

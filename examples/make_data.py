"""Write the small synthetic data sets the example configs train on.

    python examples/make_data.py            # into examples/data/, next to this script
    python examples/make_data.py --out DIR  # somewhere else (the tests regenerate into a temp folder)

Everything comes from templates, word lists and `random.Random(SEED)`, so two runs write
byte-identical files. Only the standard library is used, so it runs before paretune is installed.

The sentiment set is built so a bag of polar words is not enough: negation flips a word ("not
good" is negative, "not bad" positive) and in a contrast ("X, but Y" or "Although X, Y") the
second clause decides. The NER set uses multi-word names and a few words that are a person in
one sentence and a place or company in another, so the tag depends on context. In both sets every
fifth entry of each word list (an adjective, an aspect, a name) occurs only in validation data.
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

SEED = 20240611
SENTIMENT_ROWS = {"train": 1200, "validation": 300}
NER_SENTENCES = {"train": 800, "validation": 200}
# The chat set (examples/chat.yaml) asks the same reviews as conversations: fewer of them, since a
# language model six times MiniLM's size trains slowly on a CPU.
CHAT_ROWS = {"train": 400, "validation": 60}
CHAT_SYSTEM = "Answer positive or negative."
# The preference pairs (examples/preference.yaml) are the first chat reviews, the right label chosen
# and the other one rejected.
PREFERENCE_ROWS = {"train": 200, "validation": 40}
MIN_WORDS, MAX_WORDS = 5, 30

# --- sentiment ------------------------------------------------------------------------------

POSITIVE, NEGATIVE = 1, -1
LABEL_NAMES = {POSITIVE: "positive", NEGATIVE: "negative"}

# Adjectives that read naturally after "is" and "is not", for any aspect in either domain. Each
# domain adds adjectives that fit the item as a whole ("the film is gripping").
COMMON_ADJECTIVES = {
    POSITIVE: ["good", "great", "excellent", "wonderful", "fantastic", "impressive", "superb",
               "solid", "enjoyable", "pleasant", "brilliant", "lovely", "nice", "outstanding",
               "amazing", "terrific", "perfect", "first-rate"],
    NEGATIVE: ["bad", "terrible", "awful", "disappointing", "poor", "mediocre", "weak",
               "horrible", "frustrating", "annoying", "dreadful", "underwhelming", "lousy",
               "subpar", "awkward", "unacceptable"],
}
DOMAINS = {
    "movie": {
        "subjects": ["this movie", "the film", "the sequel", "this documentary", "the new thriller",
                     "this comedy", "the remake", "the season finale", "this animated film",
                     "the director's latest film", "the show", "this musical"],
        "aspects": ["acting", "plot", "soundtrack", "pacing", "dialogue", "cinematography", "ending",
                    "script", "lead performance", "special effects", "cast", "humor", "story",
                    "villain", "opening scene", "editing"],
        POSITIVE: ["gripping", "moving", "hilarious", "charming", "clever", "touching", "memorable",
                   "stunning", "witty", "original"],
        NEGATIVE: ["predictable", "confusing", "tedious", "clumsy", "forgettable", "cheesy", "boring",
                   "dull", "silly", "painful"],
        "fillers": ["I watched it with my family last weekend.", "We saw it at the late showing.",
                    "I streamed it on a rainy Sunday.", "It runs a little over two hours.",
                    "My sister picked it.", "I went in knowing nothing about it.",
                    "We rented it on a whim."],
        "verdicts": {
            POSITIVE: ["I would happily watch it again.", "Go see it.", "Highly recommended.",
                       "One of the best films I have seen this year.", "Worth the ticket.",
                       "I was smiling all the way home."],
            NEGATIVE: ["I nearly walked out.", "Skip this one.", "What a waste of two hours.",
                       "I want my evening back.", "Not worth the ticket.",
                       "I checked my watch more than once."],
        },
    },
    "product": {
        "subjects": ["these headphones", "the blender", "my new laptop", "this phone case",
                     "the coffee maker", "the vacuum cleaner", "this backpack", "the keyboard",
                     "the air fryer", "this desk lamp", "the electric kettle", "this smartwatch"],
        "aspects": ["battery life", "build quality", "sound", "screen", "price", "customer service",
                    "setup", "design", "packaging", "manual", "delivery", "warranty", "app",
                    "charging cable", "fabric", "noise level"],
        POSITIVE: ["sturdy", "reliable", "quiet", "comfortable", "sleek", "durable", "intuitive",
                   "affordable", "fast", "handy"],
        NEGATIVE: ["flimsy", "overpriced", "noisy", "fragile", "unreliable", "slow", "clunky",
                   "uncomfortable", "useless", "faulty"],
        "fillers": ["I bought it last month.", "It arrived on a Tuesday.", "I use it every day.",
                    "It was a birthday present.", "I ordered the black one.",
                    "I have had it for about three weeks.", "It replaced an older model."],
        "verdicts": {
            POSITIVE: ["I would buy it again.", "Five stars from me.", "Highly recommended.",
                       "Worth every penny.", "I have already ordered a second one.",
                       "My whole family loves it."],
            NEGATIVE: ["I am sending it back.", "Save your money.", "One star.",
                       "I want a refund.", "Not worth the money.", "It went straight back in the box."],
        },
    },
}
INTENSIFIERS = ["", "", "", "really", "very", "truly", "absolutely", "incredibly", "quite", "pretty",
                "surprisingly", "genuinely", "remarkably"]
# Forms of "to be" for a singular and a plural subject. The NEGATED ones flip the adjective's
# polarity; only the plain "not" forms take an emphatic tail ("not bad at all").
BE = {"is": "are", "was": "were"}
NEGATED_BE = {"is not": "are not", "was not": "were not", "isn't": "aren't", "wasn't": "weren't",
              "was never": "were never", "is hardly": "are hardly", "is far from": "are far from"}
EMPHATIC_TAILS = ["at all", "in the slightest", "by any means"]
# Verbs whose object is an aspect or the item itself.
VERBS = {
    POSITIVE: ["loved", "really enjoyed", "was impressed by", "appreciated", "liked", "adored"],
    NEGATIVE: ["hated", "was annoyed by", "could not stand", "was let down by", "disliked",
               "regretted paying for"],
}
NEGATED_VERBS = {  # polarity of the whole phrase, not of its verb
    NEGATIVE: ["did not enjoy", "did not like", "did not care for", "was not impressed by"],
    POSITIVE: ["did not mind", "had no complaints about", "could not fault", "had no problem with"],
}
OPENERS = ["", "", "", "", "", "", "", "", "", "Honestly, ", "Overall, ", "To be fair, ", "Frankly, "]


def is_plural(noun_phrase: str) -> bool:
    # Good enough for these word lists ("these headphones", "special effects"), not for English.
    return noun_phrase.startswith("these ") or noun_phrase.endswith(("effects", "headphones"))


def adjective(rng: random.Random, domain: dict, polarity: int, thing: str) -> str:
    # "The customer service was durable" would be odd: item adjectives go with the item only.
    item_words = domain[polarity] if thing in domain["subjects"] else []
    return rng.choice(COMMON_ADJECTIVES[polarity] + item_words)


def clause(rng: random.Random, domain: dict, polarity: int, thing: str) -> str:
    """One lower-case clause of the given polarity about `thing` (an aspect or the item itself)."""
    plural = is_plural(thing)
    kind = rng.random()
    if kind < 0.45:
        be = rng.choice(list(BE))
        intensifier = rng.choice(INTENSIFIERS)
        words = [thing, BE[be] if plural else be, intensifier, adjective(rng, domain, polarity, thing)]
    elif kind < 0.75:
        be = rng.choice(list(NEGATED_BE))
        words = [thing, NEGATED_BE[be] if plural else be, adjective(rng, domain, -polarity, thing)]
        if polarity == POSITIVE and be.endswith(("not", "n't")) and rng.random() < 0.3:
            words.append(rng.choice(EMPHATIC_TAILS))
    elif kind < 0.88:
        words = ["I", rng.choice(VERBS[polarity]), thing]
    else:
        words = ["I", rng.choice(NEGATED_VERBS[polarity]), thing]
    return " ".join(w for w in words if w)


def review(rng: random.Random, label: int) -> str:
    """A review whose label follows from its structure (see the module docstring)."""
    domain = DOMAINS[rng.choice(sorted(DOMAINS))]
    subject = rng.choice(domain["subjects"])
    # Each clause is about an aspect; now and then one of them is about the item as a whole.
    things = [f"the {aspect}" for aspect in rng.sample(domain["aspects"], 2)]
    if rng.random() < 0.35:
        things[rng.randrange(2)] = subject
    first, second = things
    shape = rng.random()
    if shape < 0.55:
        body = clause(rng, domain, label, first)
    elif shape < 0.7:
        body = f"{clause(rng, domain, -label, first)}, but {clause(rng, domain, label, second)}"
    elif shape < 0.82:
        lead = rng.choice(["although", "even though", "while"])
        body = f"{lead} {clause(rng, domain, -label, first)}, {clause(rng, domain, label, second)}"
    else:
        body = f"{clause(rng, domain, label, first)} and {clause(rng, domain, label, second)}"
    sentences = [capitalize(rng.choice(OPENERS) + body) + "."]
    if rng.random() < 0.08:
        sentences.insert(0, rng.choice(domain["fillers"]))
    if rng.random() < 0.08:
        sentences.append(rng.choice(domain["verdicts"][label]))
    return " ".join(sentences)


def held_out(*word_lists: list[str]) -> list[str]:
    """Every fifth entry of each list. Training data never uses these, so part of the validation
    score measures what the pretrained model knows about words it was not fine-tuned on."""
    return [entry for words in word_lists for entry in words[4::5]]


def mentions_any(words: list[str], entries: list[str]) -> bool:
    """Whether any entry (one or more words) occurs in `words`, ignoring case."""
    text = f" {' '.join(words).lower()} "
    return any(f" {entry.lower()} " in text for entry in entries)


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentiment_held_out() -> list[str]:
    word_lists = [COMMON_ADJECTIVES[POSITIVE], COMMON_ADJECTIVES[NEGATIVE]]
    for domain in DOMAINS.values():
        word_lists += [domain[POSITIVE], domain[NEGATIVE], domain["aspects"]]
    return held_out(*word_lists)


def sentiment_rows(
    rng: random.Random, count: int, seen: set[str], banned: list[str]
) -> list[tuple[str, str]]:
    """`count` unique reviews, half of each label, in shuffled order, none using a `banned` word."""
    rows = []
    while len(rows) < count:
        label = POSITIVE if len(rows) % 2 == 0 else NEGATIVE
        text = review(rng, label)
        words = [word.strip(".,") for word in text.split()]
        if text in seen or not MIN_WORDS <= len(words) <= MAX_WORDS or mentions_any(words, banned):
            continue
        seen.add(text)
        rows.append((text, LABEL_NAMES[label]))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # newline="" and an explicit terminator: the same bytes on every platform.
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


# --- NER ------------------------------------------------------------------------------------

FIRST_NAMES = ["Maria", "James", "Anna", "Ahmed", "Yuki", "Carlos", "Sophie", "David", "Priya",
               "Lars", "Fatima", "Olga", "Kwame", "Elena", "Tom", "Mei", "Pierre", "Laura",
               "Jordan", "Hans", "Georgia", "Ines", "Rafael", "Grace", "Ivan", "Amara"]
LAST_NAMES = ["Lopez", "Smith", "Schmidt", "Tanaka", "Okafor", "Rossi", "Novak", "Dubois",
              "Kowalski", "Chen", "Patel", "Johansson", "Mendes", "Washington", "Nguyen", "Ford",
              "Fischer", "Brown", "de Souza", "van der Berg", "Al Hassan", "O'Brien", "Moreau",
              "Petrov", "Kim", "Garcia"]
LOCATIONS = ["Berlin", "Paris", "Tokyo", "Lagos", "Madrid", "Toronto", "Mumbai", "Cairo", "Oslo",
             "Lima", "Nairobi", "Vienna", "Jordan", "Washington", "Chicago", "Georgia", "Brazil",
             "Canada", "Kenya", "San Francisco", "New York", "Hong Kong", "Buenos Aires",
             "Rio de Janeiro", "South Africa", "New Zealand", "Los Angeles", "Cape Town",
             "Abu Dhabi", "Sri Lanka", "Kuala Lumpur", "the Netherlands"]
ORGANIZATIONS = ["Deutsche Bank", "Siemens", "Toyota", "Ford", "Goldman Sachs", "Bank of America",
                 "the United Nations", "the Red Cross", "Harvard University", "Real Madrid",
                 "Manchester United", "Nokia", "Reuters", "the World Bank", "Acme Corporation",
                 "General Electric", "Air France", "Samsung", "Oxford University", "Greenpeace",
                 "the European Central Bank", "Unilever", "Ajax", "Bayern Munich"]
NATIONALITIES = ["German", "French", "Japanese", "Brazilian", "Kenyan", "Canadian", "Italian",
                 "Indian", "Egyptian", "Norwegian", "Mexican", "Australian"]
EVENTS = ["World Cup", "Olympic Games", "Nobel Prize", "Tour de France", "Australian Open",
          "Champions League", "Eurovision Song Contest", "Paris Marathon"]
TITLES = ["Dr.", "President", "Professor", "Minister", "coach", "Judge", "Senator"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# Slots: PER LOC ORG NAT EVENT (entities), YEAR NUM DAY (plain words). Tokens are space-separated.
NER_TEMPLATES = [
    "PER joined ORG in YEAR .",
    "ORG will cut NUM jobs in LOC .",
    "Shares of ORG rose NUM percent on DAY .",
    "PER , who grew up in LOC , now lives in LOC .",
    "The NAT delegation met PER in LOC .",
    "In LOC , PER said ORG had no plans to leave .",
    "PER scored twice as ORG beat ORG .",
    "According to PER , ORG will open an office in LOC .",
    "LOC and LOC signed a trade deal on DAY .",
    "PER won the EVENT in YEAR .",
    "Police in LOC arrested two men .",
    "PER and PER met in LOC on DAY .",
    "A spokesman for ORG declined to comment .",
    "PER flew from LOC to LOC .",
    "The NAT government said PER would visit LOC .",
    "PER , the head of ORG , resigned on DAY .",
    "Fans in LOC welcomed PER home .",
    "PER 's new book is about LOC .",
    "Rain delayed the match between ORG and ORG .",
    "LOC is home to ORG .",
    "PER , a NAT economist at ORG , expects slower growth .",
    "The EVENT will be held in LOC .",
    "NAT runner PER finished second .",
    "ORG agreed to buy ORG .",
    "Floods hit LOC on DAY .",
    "PER thanked ORG .",
    "Talks between LOC and LOC resumed in LOC .",
    "Last year PER moved from ORG to ORG .",
    "PER said the deal was good news for LOC .",
    "Both teams will travel to LOC for the EVENT .",
    "ORG opened its first store in LOC in YEAR .",
    "PER lives in LOC .",
    "PER works for ORG .",
    "The weather stayed dry all week .",
    "Prices rose by NUM percent .",
]


def person(rng: random.Random) -> list[tuple[str, str]]:
    """A name as (word, tag) pairs; an optional title before it is not part of the entity."""
    title = [(rng.choice(TITLES), "O")] if rng.random() < 0.2 else []
    if title and rng.random() < 0.5:
        words = rng.choice(LAST_NAMES).split()
    else:
        words = [rng.choice(FIRST_NAMES), *rng.choice(LAST_NAMES).split()]
    return title + tagged(words, "PER")


def tagged(words: list[str], entity_type: str) -> list[tuple[str, str]]:
    """IOB2 tags; a leading 'the' stays outside the entity, as in CoNLL-2003."""
    lead = [(words[0], "O")] if words[0] == "the" else []
    words = words[len(lead):]
    return lead + [(w, ("B-" if i == 0 else "I-") + entity_type) for i, w in enumerate(words)]


def fill_slot(rng: random.Random, slot: str) -> list[tuple[str, str]]:
    if slot == "PER":
        return person(rng)
    if slot == "LOC":
        return tagged(rng.choice(LOCATIONS).split(), "LOC")
    if slot == "ORG":
        return tagged(rng.choice(ORGANIZATIONS).split(), "ORG")
    if slot == "NAT":
        return tagged([rng.choice(NATIONALITIES)], "MISC")
    if slot == "EVENT":
        return tagged(rng.choice(EVENTS).split(), "MISC")
    if slot == "YEAR":
        return [(str(rng.randint(1990, 2024)), "O")]
    if slot == "NUM":
        return [(str(rng.choice([2, 3, 5, 7, 12, 15, 40, 120, 300, 650])), "O")]
    if slot == "DAY":
        return [(rng.choice(DAYS), "O")]
    return [(slot, "O")]


def ner_sentence(rng: random.Random) -> list[tuple[str, str]]:
    pairs = []
    for token in rng.choice(NER_TEMPLATES).split():
        pairs += fill_slot(rng, token)
    # A lower-case 'the' or title opening the sentence is capitalized, as a writer would.
    first_word, first_tag = pairs[0]
    return [(capitalize(first_word), first_tag), *pairs[1:]]


def ner_held_out() -> list[str]:
    return held_out(FIRST_NAMES, LAST_NAMES, LOCATIONS, ORGANIZATIONS, NATIONALITIES, EVENTS)


def ner_sentences(
    rng: random.Random, count: int, seen: set[tuple], banned: list[str]
) -> list[list[tuple[str, str]]]:
    sentences = []
    while len(sentences) < count:
        sentence = ner_sentence(rng)
        key = tuple(sentence)
        if key in seen or mentions_any([word for word, _ in sentence], banned):
            continue
        seen.add(key)
        sentences.append(sentence)
    return sentences


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for sentence in sentences:
        lines += [f"{word} {tag}" for word, tag in sentence] + [""]
    path.write_bytes("\n".join(lines).encode("utf-8"))


def write_chat(path: Path, rows: list[tuple[str, str]]) -> None:
    """Reviews as chat conversations (JSON lines): the review from the user, the label as the answer."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"messages": [{"role": "system", "content": CHAT_SYSTEM},
                                      {"role": "user", "content": text},
                                      {"role": "assistant", "content": label}]}) for text, label in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def write_preference(path: Path, rows: list[tuple[str, str]]) -> None:
    """Reviews as preference pairs (JSON lines): the conversation up to the user's turn, the right
    label as the chosen answer and the other label as the rejected one."""
    import json

    other = {"positive": "negative", "negative": "positive"}
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"messages": [{"role": "system", "content": CHAT_SYSTEM}, {"role": "user", "content": text}],
                         "chosen": label, "rejected": other[label]}) for text, label in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data",
                        help="folder to write sentiment/, chat/, preference/ and ner/ into "
                             "(default: data/ next to this script)")
    out = parser.parse_args(argv).out
    rng = random.Random(SEED)
    seen_reviews: set[str] = set()  # shared across splits: no review is in both train and validation
    for split, count in SENTIMENT_ROWS.items():
        banned = sentiment_held_out() if split == "train" else []
        rows = sentiment_rows(rng, count, seen_reviews, banned)
        write_csv(out / "sentiment" / f"{split}.csv", rows)
        write_chat(out / "chat" / f"{split}.jsonl", rows[: CHAT_ROWS[split]])
        write_preference(out / "preference" / f"{split}.jsonl", rows[: PREFERENCE_ROWS[split]])
    seen_sentences: set[tuple] = set()
    for split, count in NER_SENTENCES.items():
        banned = ner_held_out() if split == "train" else []
        write_conll(out / "ner" / f"{split}.conll", ner_sentences(rng, count, seen_sentences, banned))
    print(f"wrote {out / 'sentiment'}, {out / 'chat'}, {out / 'preference'} and {out / 'ner'}")


if __name__ == "__main__":
    main()

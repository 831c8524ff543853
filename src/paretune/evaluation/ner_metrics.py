"""Entity-level NER metrics and span extraction, computed with seqeval.

Two readings of a tag sequence are supported, chosen by the data's tag scheme:

* `iob1` / `iob2`: conlleval semantics (seqeval's default mode). An entity starts at any B-, or at
  an I- that does not continue an entity of its own type (after O or another type), so IOB1 data
  (where B- only separates two adjacent entities of one type) and IOB2 data read the way the
  CoNLL scorer reads them.
* `bioes`: seqeval strict mode with the IOBES scheme. Only well-formed chunks count (B- ... E-
  or S-); a B- that never reaches its E- is not an entity at all.

An entity counts as correct only when both its type and its exact boundaries match.
"""
from __future__ import annotations

import warnings


TAG_SCHEMES = ("iob1", "iob2", "bioes")


def detect_tag_scheme(tag_sequences: list[list[str]]) -> str:
    """Guess the tag scheme of some gold data: `bioes`, `iob2` or `iob1`.

    `bioes` if any tag starts with S- or E-; `iob2` if every I-X directly follows B-X or I-X in
    the same sentence; otherwise `iob1`. Data with no I- tags at all reads as `iob2`.
    """
    if any(tag.startswith(("S-", "E-")) for tags in tag_sequences for tag in tags):
        return "bioes"
    for tags in tag_sequences:
        previous = "O"  # a sentence never continues an entity from the one before
        for tag in tags:
            if tag.startswith("I-") and previous not in (f"B-{tag[2:]}", tag):
                return "iob1"
            previous = tag
    return "iob2"


def tags_to_spans(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    """Entities in one sentence as (type, start word, end word exclusive).

    Reads the tags exactly as `ner_metrics` does, so spans built from predictions score the same.
    """
    # seqeval imports scikit-learn (over a second); only processes that score NER pay for it.
    from seqeval.metrics.sequence_labeling import get_entities
    from seqeval.scheme import IOBES, Entities

    _check_scheme(scheme)
    if scheme == "bioes":
        entities = Entities([list(tags)], IOBES).entities[0]
        return [(entity.tag, entity.start, entity.end) for entity in entities]
    # get_entities reports inclusive ends; spans here are half-open like Python slices.
    return [(entity_type, start, end + 1) for entity_type, start, end in get_entities(list(tags))]


def ner_metrics(true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str) -> dict:
    """Entity precision/recall/F1 (micro), macro F1, token accuracy and per-type scores."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import IOBES

    _check_scheme(scheme)
    _check_aligned(true_tags, pred_tags)
    strict = {"mode": "strict", "scheme": IOBES} if scheme == "bioes" else {}
    with warnings.catch_warnings():
        # seqeval warns about tags it cannot parse and ill-formed chunks; with zero_division=0
        # the scores are still defined, and a warning per eval step would flood the logs.
        warnings.simplefilter("ignore")
        report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0, **strict)
        token_accuracy = float(accuracy_score(true_tags, pred_tags))

    averages = ("micro avg", "macro avg", "weighted avg")
    per_type = {
        entity_type: {
            "precision": float(scores["precision"]),
            "recall": float(scores["recall"]),
            "f1": float(scores["f1-score"]),
            "support": int(scores["support"]),
        }
        for entity_type, scores in sorted(report.items())
        if entity_type not in averages
    }
    micro = report["micro avg"]
    # With no entities in either gold or predictions seqeval's macro average is NaN (mean of
    # nothing); 0.0 keeps the result JSON-safe and matches the micro figures in that case.
    f1_macro = float(report["macro avg"]["f1-score"]) if per_type else 0.0
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "f1_macro": f1_macro,
        "accuracy": token_accuracy,
        "per_type": per_type,
    }


def _check_scheme(scheme: str) -> None:
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(TAG_SCHEMES)}")


def _check_aligned(true_tags: list[list[str]], pred_tags: list[list[str]]) -> None:
    """Name the first misaligned sentence; seqeval's own error does not say which one."""
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} gold sentences but {len(pred_tags)} predicted")
    for index, (gold, predicted) in enumerate(zip(true_tags, pred_tags)):
        if len(gold) != len(predicted):
            raise ValueError(
                f"sentence {index}: {len(gold)} gold tags but {len(predicted)} predicted tags"
            )

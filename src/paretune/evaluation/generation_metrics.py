"""Scores of generated texts against references: exact match, contains, ROUGE-L, BLEU/chrF, and a
structured-output match (`regex:PATTERN`, `json:FIELD`, or `json-list`: micro F1 over the items of
JSON lists, such as entities extracted from a sentence).

Texts are compared after stripping surrounding whitespace and case (exact match and contains),
because a trailing newline or a capital letter is rarely what a user means by a wrong answer.
ROUGE-L (`rouge-score`) and BLEU/chrF (`sacrebleu`) are reported when those packages are
installed (`pip install "paretune[generation]"`), and left out otherwise.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

MATCH_KINDS = ("regex:PATTERN", "json:FIELD", "json-list")


def normalise(text: str) -> str:
    return " ".join(text.strip().lower().split())


def generation_metrics(predictions: list[str], references: list[str], match: str | None = None) -> dict[str, Any]:
    pairs = [(normalise(p), normalise(r)) for p, r in zip(predictions, references)]
    n = max(len(pairs), 1)
    metrics: dict[str, Any] = {
        "exact_match": sum(p == r for p, r in pairs) / n,
        "contains": sum(r in p for p, r in pairs) / n,
        "generated_rows": len(pairs),
    }
    metrics.update(_rouge_l(predictions, references))
    metrics.update(_bleu_chrf(predictions, references))
    if match:
        metrics["structured_match"] = sum(structured_equal(p, r, match) for p, r in zip(predictions, references)) / n
    if match == "json-list":
        metrics.update(json_list_scores(predictions, references))
    return metrics


def check_match(match: str) -> str:
    kind, colon, _ = match.partition(":")
    if not ((kind in ("regex", "json") and colon) or match == "json-list"):
        raise ValueError(f"unknown match '{match}': use one of {', '.join(MATCH_KINDS)}")
    return match


def json_items(text: str) -> Counter | None:
    """The items of a JSON list as a multiset of canonical JSON texts (key order ignored);
    None when the text is not a JSON list."""
    try:
        value = json.loads(text.strip())
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    return Counter(json.dumps(item, sort_keys=True, ensure_ascii=False) for item in value)


def json_list_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Micro precision, recall and F1 over list items, each item matched at most as often as it
    occurs on both sides (entity-level F1 when items are {"text", "type"}). An answer that is not
    a JSON list predicts nothing; `json_parse_rate` is the share of answers that are one."""
    hits = predicted = expected = parsed = 0
    for prediction, reference in zip(predictions, references):
        ours, gold = json_items(prediction), json_items(reference) or Counter()
        parsed += ours is not None
        ours = ours or Counter()
        hits += sum((ours & gold).values())
        predicted += sum(ours.values())
        expected += sum(gold.values())
    precision, recall = hits / max(predicted, 1), hits / max(expected, 1)
    return {"item_precision": precision, "item_recall": recall,
            "item_f1": 2 * precision * recall / (precision + recall) if hits else 0.0,
            "json_parse_rate": parsed / max(len(predictions), 1)}


def structured_equal(prediction: str, reference: str, match: str) -> bool:
    """`regex:PATTERN`: the first match (group 1 if any) agrees; `json:FIELD`: the parsed field agrees;
    `json-list`: the same items, in any order."""
    if match == "json-list":
        ours = json_items(prediction)
        return ours is not None and ours == json_items(reference)
    kind, _, spec = match.partition(":")
    if kind == "regex":
        found = [re.search(spec, text) for text in (prediction, reference)]
        if not all(found):
            return False
        values = [m.group(1) if m.re.groups else m.group(0) for m in found]
        return values[0] == values[1]
    if kind == "json":
        try:
            values = [json.loads(text.strip()) for text in (prediction, reference)]
        except ValueError:
            return False
        if spec:
            values = [v.get(spec) if isinstance(v, dict) else None for v in values]
        return values[0] == values[1]
    raise ValueError(f"unknown match '{match}': use one of {', '.join(MATCH_KINDS)}")


def _rouge_l(predictions: list[str], references: list[str]) -> dict[str, float]:
    try:
        from rouge_score import rouge_scorer, tokenizers
    except ImportError:
        return {}
    # A tokenizer given, so rouge-score does not log through absl (which prints to a closed stream).
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=tokenizers.DefaultTokenizer(use_stemmer=False))
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return {"rouge_l": sum(scores) / max(len(scores), 1)}


def _bleu_chrf(predictions: list[str], references: list[str]) -> dict[str, float]:
    try:
        import sacrebleu
    except ImportError:
        return {}
    return {
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
    }

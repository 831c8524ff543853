"""Scores of generated texts against references: exact match, contains, ROUGE-L, BLEU/chrF, and a
structured-output match (`regex:PATTERN` or `json:FIELD`).

Texts are compared after stripping surrounding whitespace and case (exact match and contains),
because a trailing newline or a capital letter is rarely what a user means by a wrong answer.
ROUGE-L (`rouge-score`) and BLEU/chrF (`sacrebleu`) are reported when those packages are
installed (`pip install "paretune[generation]"`), and left out otherwise.
"""
from __future__ import annotations

import json
import re
from typing import Any


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
    return metrics


def structured_equal(prediction: str, reference: str, match: str) -> bool:
    """`regex:PATTERN`: the first match (group 1 if any) agrees; `json:FIELD`: the parsed field agrees."""
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
    raise ValueError(f"unknown match '{match}': use regex:PATTERN or json:FIELD")


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

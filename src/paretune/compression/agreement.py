"""How often a compressed model gives the same answer as its parent, and how to say it.

`max_abs_logit_diff` (the largest change of any raw score) is kept as a check, but alone it does
not tell a user whether 1.09 is bad: a shift that moves no prediction across the decision line
costs nothing. The share of validation predictions that stay the same, next to the metric
before and after, is what decides whether the smaller model is usable.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from paretune.tasks.base import Task

log = logging.getLogger("paretune")

# Tasks whose outputs are scores per label, answered by the highest one (per token for NER).
ARGMAX_TASKS = ("classification", "ner", "image-classification")
LOWER_IS_BETTER = Task.lower_is_better
# Beyond these a compressed child is called out: its perplexity more than doubled, or its
# answer score fell by more than 5 points (the int8 chat probe: 4.4 vs 1.03, 0.98 -> 0.38).
PERPLEXITY_WARN_RATIO = 2.0
SCORE_WARN_DROP = 0.05


def predicted_labels(task_name: str, outputs: list[np.ndarray]) -> list[np.ndarray] | None:
    """Label ids per example (per token for NER); None for tasks without one answer per position."""
    if task_name not in ARGMAX_TASKS:
        return None
    return [np.asarray(output).argmax(axis=-1).reshape(-1) for output in outputs]


def label_agreement(child: list[np.ndarray] | None, parent: list[np.ndarray] | None) -> float | None:
    """Share of predictions (tokens, for NER) the child makes exactly as the parent did."""
    if child is None or parent is None or len(child) != len(parent):
        return None
    same = total = 0
    for mine, theirs in zip(child, parent):
        if mine.shape != theirs.shape:
            return None
        same += int((mine == theirs).sum())
        total += mine.size
    return round(same / total, 6) if total else None


def answer_metrics(predictor, examples: list, name: str) -> tuple[dict[str, Any], list[str]]:
    """A generative run's scores on its generated answers (exact match, contains, ROUGE-L..., the
    task's own `generation_metrics`) over the rows its training scored, and the answers themselves."""
    from paretune.evaluation.generation_metrics import generation_metrics

    task = predictor.task
    scored = [ex for ex in examples if ex.label is not None][: task.config.generate_rows]
    if not scored:
        return {}, []
    log.info("%s: answering %d validation rows (greedy, at most %d new tokens each)", name, len(scored),
             task.config.max_new_tokens)
    answers = task.answer(predictor.model, predictor.tokenizer, scored, predictor.device)
    return generation_metrics(answers, [str(ex.label) for ex in scored], task.config.match), answers


def answer_agreement(child: list[str] | None, parent: list[str] | None) -> float | None:
    """Share of validation answers the child generates exactly as the parent did (case and spacing aside)."""
    from paretune.evaluation.generation_metrics import normalise

    if not child or parent is None or len(child) != len(parent):
        return None
    return round(sum(normalise(a) == normalise(b) for a, b in zip(child, parent)) / len(child), 6)


def quality_warnings(change: dict[str, Any]) -> list[str]:
    """What a user must not miss: a child whose answers or perplexity fell apart."""
    warnings = []
    before, after = change["parent"], change["value"]
    ppl_before, ppl_after = before.get("perplexity"), after.get("perplexity")
    if _number(ppl_before) and _number(ppl_after) and ppl_after > PERPLEXITY_WARN_RATIO * ppl_before:
        warnings.append(f"validation perplexity rose from {_plain(ppl_before)} to {_plain(ppl_after)} "
                        f"(x{ppl_after / ppl_before:,.3g}): this model no longer predicts its answers as the parent "
                        "did; keep more of it, or try --recover-epochs")
    name = change["metric"]
    score_before, score_after = before.get(name), after.get(name)
    if (name not in LOWER_IS_BETTER and _number(score_before) and _number(score_after)
            and score_before - score_after > SCORE_WARN_DROP and abs(score_before) <= 1):
        warnings.append(f"validation {name} fell from {score_before:.3f} to {score_after:.3f} "
                        f"({_points(score_after - score_before)})")
    return warnings


def agreement_lines(change: dict[str, Any], checks: dict[str, Any]) -> list[str]:
    """The summary lines on quality: the task metric and agreement with the parent first, then
    perplexity (generative runs), the logit check, and any warning."""
    lines = []
    name = change["metric"]
    before, after = change["parent"].get(name), change["value"].get(name)
    agreement = change.get("label_agreement")
    answers = change.get("answer_agreement")
    if answers is not None:  # a generative run: what it answers leads
        lines.append(f"  validation {name}: {_compare(name, before, after)}")
        lines.append(f"  answer agreement with the parent: {100 * answers:.1f}% of validation answers identical")
    elif agreement is not None:
        lines.append(f"  label agreement with the parent: {100 * agreement:.1f}% of validation predictions")
    if answers is None and _number(before) and _number(after):
        lines.append(f"  validation {name}: {_compare(name, before, after)}")
    ppl_before, ppl_after = change["parent"].get("perplexity"), change["value"].get("perplexity")
    if name != "perplexity" and _number(ppl_before) and _number(ppl_after):
        lines.append(f"  validation perplexity: {_compare('perplexity', ppl_before, ppl_after)}")
    difference = checks.get("max_abs_logit_diff")
    if isinstance(difference, (int, float)):
        lines.append(f"  max_abs_logit_diff: {difference:.3g} (largest change of any raw score; it matters only "
                     f"where it flips a prediction, which the agreement above counts)")
    lines += [f"  WARNING: {warning}" for warning in change.get("warnings") or []]
    return lines


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: float) -> str:
    """4 significant digits, but large values whole and grouped (378,374,788, not 3.784e+08)."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _compare(name: str, before: Any, after: Any) -> str:
    """'after vs parent before (change)': points for scores in [0, 1], a ratio for the rest."""
    if not (_number(before) and _number(after)):
        return f"{after if after is not None else 'none'} (parent {before if before is not None else 'none'})"
    if name in LOWER_IS_BETTER or abs(before) > 1 or abs(after) > 1:
        ratio = f"x{after / before:,.3g}" if before else f"{after - before:+,.4g}"
        return f"{_plain(after)} vs parent {_plain(before)} ({ratio})"
    return f"{after:.3f} vs parent {before:.3f} ({_points(after - before)})"


def _points(delta: float) -> str:
    """A metric change in percentage points, the unit people compare accuracies in."""
    return f"{100 * delta:+.1f} points"

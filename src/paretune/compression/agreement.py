"""How often a compressed model gives the same answer as its parent, and how to say it.

`max_abs_logit_diff` (the largest change of any raw score) is kept as a check, but alone it does
not tell a user whether 1.09 is bad: a shift that moves no prediction across the decision line
costs nothing. The share of validation predictions that stay the same, next to the metric
before and after, is what decides whether the smaller model is usable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# Tasks whose outputs are scores per label, answered by the highest one (per token for NER).
ARGMAX_TASKS = ("classification", "ner", "image-classification")


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


def agreement_lines(change: dict[str, Any], checks: dict[str, Any]) -> list[str]:
    """The summary lines on quality: agreement, metric against the parent, the logit check."""
    lines = []
    name = change["metric"]
    before, after = change["parent"].get(name), change["value"].get(name)
    agreement = change.get("label_agreement")
    if agreement is not None:
        lines.append(f"  label agreement with the parent: {100 * agreement:.1f}% of validation predictions")
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        lines.append(f"  validation {name}: {after:.3f} vs parent {before:.3f} ({_points(after - before)})")
    difference = checks.get("max_abs_logit_diff")
    if isinstance(difference, (int, float)):
        lines.append(f"  max_abs_logit_diff: {difference:.3g} (largest change of any raw score; it matters only "
                     f"where it flips a prediction, which the agreement above counts)")
    return lines


def _points(delta: float) -> str:
    """A metric change in percentage points, the unit people compare accuracies in."""
    return f"{100 * delta:+.1f} points"

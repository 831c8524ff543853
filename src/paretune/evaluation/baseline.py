"""Is a trained classifier better than always answering the most common label?

A run that ends at chance looks like any other run: it prints an accuracy (0.547) and writes a
model. On a 55/45 validation set that number means the model learned nothing, and the usual
causes (learning rate too low for the parameters being trained, too few steps) are cheap to fix,
so we say so at the end of training instead of leaving the user to guess.
"""
from __future__ import annotations

import math
from typing import Any

# "No better" means within this many standard errors of the baseline's accuracy on this many
# rows (binomial: sqrt(p(1-p)/n)). On 300 balanced rows that is 0.50 + 0.058: a 0.547 there
# could be a constant answer plus luck; on 10,000 rows the margin shrinks to 0.01.
BASELINE_STANDARD_ERRORS = 2.0


def majority_baseline(metrics: dict[str, Any]) -> tuple[int, float, int] | None:
    """(label index, accuracy, rows) of always predicting the validation set's most common label.

    Read from the confusion matrix (rows are true labels), so it needs no data beyond the metrics;
    None for metrics without one (regression, NER).
    """
    matrix = metrics.get("confusion_matrix")
    if not matrix or not all(isinstance(row, list) and len(row) == len(matrix) for row in matrix):
        return None
    true_counts = [sum(row) for row in matrix]
    total = sum(true_counts)
    if total == 0:
        return None
    best = max(range(len(true_counts)), key=true_counts.__getitem__)
    return best, true_counts[best] / total, total


def no_better_than_baseline(metrics: dict[str, Any], labels: list[str], lr: float | None = None) -> str | None:
    """A warning when validation accuracy is at or below the majority-label baseline, else None."""
    baseline = majority_baseline(metrics)
    accuracy = metrics.get("accuracy")
    if baseline is None or accuracy is None or len(labels) != len(metrics["confusion_matrix"]):
        return None
    label, baseline_accuracy, rows = baseline
    margin = BASELINE_STANDARD_ERRORS * math.sqrt(baseline_accuracy * (1 - baseline_accuracy) / rows)
    if accuracy > baseline_accuracy + margin:
        return None
    lr_note = f" (this run: {lr:.2g})" if lr else ""
    return (f"validation accuracy {accuracy:.3f} is no better than always predicting "
            f"'{labels[label]}' ({baseline_accuracy:.3f}, within the noise of {rows} rows): the model has "
            f"learned little. Try a higher training.lr{lr_note}, more training.epochs, or a method that "
            "trains more parameters.")

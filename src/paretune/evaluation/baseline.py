"""Is a trained classifier better than always answering the most common label?

A run that ends at chance looks like any other run: it prints an accuracy (0.547) and writes a
model. On a 55/45 validation set that number means the model learned nothing, and the usual
causes (learning rate too low for the parameters being trained, too few steps) are cheap to fix,
so we say so at the end of training instead of leaving the user to guess.
"""
from __future__ import annotations

from typing import Any

# Within one point of the baseline counts as "no better": on a few hundred validation rows one
# point is a handful of examples, well inside run-to-run noise.
BASELINE_MARGIN = 0.01


def majority_baseline(metrics: dict[str, Any]) -> tuple[int, float] | None:
    """(label index, accuracy) of always predicting the validation set's most common label.

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
    return best, true_counts[best] / total


def no_better_than_baseline(metrics: dict[str, Any], labels: list[str], lr: float | None = None) -> str | None:
    """A warning when validation accuracy is at or below the majority-label baseline, else None."""
    baseline = majority_baseline(metrics)
    accuracy = metrics.get("accuracy")
    if baseline is None or accuracy is None or len(labels) != len(metrics["confusion_matrix"]):
        return None
    label, baseline_accuracy = baseline
    if accuracy > baseline_accuracy + BASELINE_MARGIN:
        return None
    lr_note = f" (this run: {lr:.2g})" if lr else ""
    return (f"validation accuracy {accuracy:.3f} is no better than always predicting "
            f"'{labels[label]}' ({baseline_accuracy:.3f}): the model has learned little. Try a higher "
            f"training.lr{lr_note}, more training.epochs, or a method that trains more parameters.")

"""Metrics for single-label and multi-label classification, computed from confusion counts.

Labels are passed as a list of names; predictions and targets are indices into that list. Every
label in the list gets a row in `per_class` and the confusion matrix, even one that never occurs,
so results from different runs on the same label set line up.

Everything here follows from per-label true-positive / predicted / actual counts, a few lines of
numpy. scikit-learn computes the same figures (tests/test_metrics.py checks that they agree), but
importing it costs 1.3-1.9 s on this machine, in every training and serving process, to score a
few thousand rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict:
    """Accuracy, macro/micro/weighted precision-recall-F1, per-class scores and the confusion matrix."""
    true_ids = np.asarray(y_true, dtype=int).reshape(-1)
    pred_ids = np.asarray(y_pred, dtype=int).reshape(-1)
    _check_label_ids(true_ids, pred_ids, len(labels))
    # Counting over the full index range keeps absent labels in the averages and the matrix,
    # instead of silently dropping classes that happen to be missing from a small eval set.
    matrix = np.bincount(true_ids * len(labels) + pred_ids, minlength=len(labels) ** 2)
    matrix = matrix.reshape(len(labels), len(labels))
    counts = _Counts(np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1))

    metrics: dict = {"accuracy": float(np.trace(matrix) / true_ids.size)}
    metrics.update(counts.averages(("macro", "micro", "weighted")))
    metrics["per_class"] = counts.per_class(labels)
    metrics["confusion_matrix"] = [[int(count) for count in row] for row in matrix]
    metrics["support"] = int(true_ids.size)
    return metrics


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Subset accuracy, micro/macro F1, Hamming loss and per-class scores for 0/1 indicator arrays."""
    true_matrix = np.asarray(y_true, dtype=int)
    pred_matrix = np.asarray(y_pred, dtype=int)
    expected_shape = (true_matrix.shape[0], len(labels))
    if true_matrix.ndim != 2 or true_matrix.shape != expected_shape or pred_matrix.shape != expected_shape:
        raise ValueError(
            f"multi-label targets and predictions must both have shape (n, {len(labels)}); "
            f"got {true_matrix.shape} and {pred_matrix.shape}"
        )
    if true_matrix.shape[0] == 0:
        raise ValueError("cannot score an empty evaluation set")

    true_bool, pred_bool = true_matrix.astype(bool), pred_matrix.astype(bool)
    counts = _Counts((true_bool & pred_bool).sum(axis=0), pred_bool.sum(axis=0), true_bool.sum(axis=0))
    averages = counts.averages(("micro", "macro"))
    return {
        # Subset accuracy: every label of a row must match.
        "exact_match": float((true_bool == pred_bool).all(axis=1).mean()),
        "f1_micro": averages["f1_micro"],
        "f1_macro": averages["f1_macro"],
        "precision_micro": averages["precision_micro"],
        "recall_micro": averages["recall_micro"],
        "hamming_loss": float((true_bool != pred_bool).mean()),
        "per_class": counts.per_class(labels),
    }


class _Counts:
    """Per-label true positives, predicted positives and actual positives (support)."""

    def __init__(self, true_positive: np.ndarray, predicted: np.ndarray, support: np.ndarray):
        self.true_positive = true_positive.astype(float)
        self.predicted = predicted.astype(float)
        self.support = support.astype(float)

    def scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-label precision, recall and F1; a ratio with a zero denominator is 0, not NaN."""
        return _scores(self.true_positive, self.predicted, self.support)

    def averages(self, kinds: Sequence[str]) -> dict[str, float]:
        precision, recall, f1 = self.scores()
        out: dict[str, float] = {}
        for kind in kinds:
            if kind == "micro":
                values = _scores(self.true_positive.sum(), self.predicted.sum(), self.support.sum())
            elif kind == "macro":
                values = (precision.mean(), recall.mean(), f1.mean())
            else:  # weighted by support; all-zero support scores 0, as scikit-learn does
                total = self.support.sum()
                weights = self.support / total if total else np.zeros_like(self.support)
                values = ((precision * weights).sum(), (recall * weights).sum(), (f1 * weights).sum())
            for name, value in zip(("precision", "recall", "f1"), values):
                out[f"{name}_{kind}"] = float(value)
        return out

    def per_class(self, labels: list[str]) -> dict:
        """{label: {precision, recall, f1, support}} for every label, in the order given."""
        precision, recall, f1 = self.scores()
        return {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(self.support[i]),
            }
            for i, name in enumerate(labels)
        }


def _scores(true_positive, predicted, support):
    true_positive, predicted, support = (np.asarray(x, dtype=float) for x in (true_positive, predicted, support))
    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def _check_label_ids(true_ids: np.ndarray, pred_ids: np.ndarray, num_labels: int) -> None:
    """Reject inputs that would be scored without complaint but wrongly."""
    if true_ids.size != pred_ids.size:
        raise ValueError(f"{true_ids.size} targets but {pred_ids.size} predictions")
    if true_ids.size == 0:
        raise ValueError("cannot score an empty evaluation set")
    # An id outside the label list would count against accuracy yet vanish from the matrix.
    for name, ids in (("target", true_ids), ("prediction", pred_ids)):
        bad = ids[(ids < 0) | (ids >= num_labels)]
        if bad.size:
            raise ValueError(f"{name} label id {int(bad[0])} is outside 0..{num_labels - 1}")

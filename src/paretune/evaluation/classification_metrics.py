"""Metrics for single-label and multi-label classification, computed with scikit-learn.

Labels are passed as a list of names; predictions and targets are indices into that list. Every
label in the list gets a row in `per_class` and the confusion matrix, even one that never occurs,
so results from different runs on the same label set line up.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    hamming_loss,
    precision_recall_fscore_support,
)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict:
    """Accuracy, macro/micro/weighted precision-recall-F1, per-class scores and the confusion matrix."""
    true_ids = np.asarray(y_true, dtype=int).reshape(-1)
    pred_ids = np.asarray(y_pred, dtype=int).reshape(-1)
    _check_label_ids(true_ids, pred_ids, len(labels))
    # Passing the full index range keeps absent labels in the averages and the matrix, instead
    # of sklearn silently dropping classes that happen to be missing from a small eval set.
    label_ids = list(range(len(labels)))

    metrics: dict = {"accuracy": float(accuracy_score(true_ids, pred_ids))}
    for average in ("macro", "micro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true_ids, pred_ids, labels=label_ids, average=average, zero_division=0
        )
        metrics[f"precision_{average}"] = float(precision)
        metrics[f"recall_{average}"] = float(recall)
        metrics[f"f1_{average}"] = float(f1)
    metrics["per_class"] = _per_class(true_ids, pred_ids, labels)
    matrix = confusion_matrix(true_ids, pred_ids, labels=label_ids)
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

    precision_micro, recall_micro, f1_micro, _ = precision_recall_fscore_support(
        true_matrix, pred_matrix, average="micro", zero_division=0
    )
    _, _, f1_macro, _ = precision_recall_fscore_support(
        true_matrix, pred_matrix, average="macro", zero_division=0
    )
    return {
        # On indicator arrays sklearn's accuracy is subset accuracy: every label of a row must match.
        "exact_match": float(accuracy_score(true_matrix, pred_matrix)),
        "f1_micro": float(f1_micro),
        "f1_macro": float(f1_macro),
        "precision_micro": float(precision_micro),
        "recall_micro": float(recall_micro),
        "hamming_loss": float(hamming_loss(true_matrix, pred_matrix)),
        "per_class": _per_class(true_matrix, pred_matrix, labels),
    }


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """{label: {precision, recall, f1, support}} for every label, in the order given."""
    # For indicator arrays `labels` selects columns; for index vectors it selects class ids.
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(labels))), average=None, zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }


def _check_label_ids(true_ids: np.ndarray, pred_ids: np.ndarray, num_labels: int) -> None:
    """Reject inputs sklearn would score without complaint but wrongly."""
    if true_ids.size != pred_ids.size:
        raise ValueError(f"{true_ids.size} targets but {pred_ids.size} predictions")
    if true_ids.size == 0:
        raise ValueError("cannot score an empty evaluation set")
    # An id outside the label list would count against accuracy yet vanish from the matrix.
    for name, ids in (("target", true_ids), ("prediction", pred_ids)):
        bad = ids[(ids < 0) | (ids >= num_labels)]
        if bad.size:
            raise ValueError(f"{name} label id {int(bad[0])} is outside 0..{num_labels - 1}")

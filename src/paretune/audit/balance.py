"""Class imbalance in training, and label distribution shift between splits.

Shift is the total variation distance between two label distributions (half the sum of absolute
differences: the share of rows that would have to change label), with a chi-square test so a
small split's noise is not mistaken for shift.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import chi2_contingency

IMBALANCE_RATIO = 3.0  # largest / smallest class above this is reported as imbalanced
SHIFT_DISTANCE = 0.1
SHIFT_P = 0.01


def class_counts(targets: list[int], n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_classes)


def imbalance(counts: np.ndarray, labels: list[str]) -> dict[str, Any]:
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 0.0
    return {
        "counts": {label: int(n) for label, n in zip(labels, counts)},
        "largest_to_smallest": round(ratio, 3),
        "imbalanced": ratio > IMBALANCE_RATIO,
        "missing_labels": [label for label, n in zip(labels, counts) if n == 0],
    }


def shift(train: np.ndarray, other: np.ndarray, labels: list[str]) -> dict[str, Any]:
    p, q = train / max(train.sum(), 1), other / max(other.sum(), 1)
    distance = float(0.5 * np.abs(p - q).sum())
    table = np.stack([train, other])
    table = table[:, table.sum(0) > 0]
    p_value = float(chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0
    return {
        "share": {label: [round(float(a), 4), round(float(b), 4)] for label, a, b in zip(labels, p, q)},
        "total_variation": round(distance, 4),
        "p_value": round(p_value, 6),
        "shifted": distance >= SHIFT_DISTANCE and p_value < SHIFT_P,
    }

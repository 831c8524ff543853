"""Metrics for scalar regression: errors, R^2 and rank/linear correlation."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def regression_metrics(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> dict:
    """MSE, RMSE, MAE, R^2, Pearson and Spearman correlation.

    Multi-target inputs of matching shape are flattened, so every figure is pooled over all
    targets rather than averaged per target.
    """
    # Imported here: scikit-learn and scipy cost every process over a second to import, and only
    # regression runs use them (scipy ships with scikit-learn, so this adds no dependency).
    from scipy.stats import rankdata
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    targets = np.asarray(y_true, dtype=float)
    predictions = np.asarray(y_pred, dtype=float)
    if targets.shape != predictions.shape:
        raise ValueError(f"targets have shape {targets.shape} but predictions {predictions.shape}")
    targets, predictions = targets.reshape(-1), predictions.reshape(-1)
    if targets.size == 0:
        raise ValueError("cannot score an empty evaluation set")

    mse = float(mean_squared_error(targets, predictions))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(mean_absolute_error(targets, predictions)),
        "r2": _r2(targets, predictions),
        "pearson": _pearson(targets, predictions),
        # Spearman is Pearson on the ranks; ties share their average rank.
        "spearman": _pearson(rankdata(targets), rankdata(predictions)),
    }


def _r2(targets: np.ndarray, predictions: np.ndarray) -> float:
    # R^2 is undefined for a single sample (sklearn returns NaN and warns); report 0.0, the
    # score of predicting the mean, so the metrics file stays valid JSON.
    if targets.size < 2:
        return 0.0
    from sklearn.metrics import r2_score

    return float(r2_score(targets, predictions))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    # Correlation is undefined when either side is constant (zero variance), e.g. a model that
    # predicts the same value everywhere. We return 0.0 rather than NaN: "no linear relation" is
    # the honest reading, and NaN would break JSON output and any comparison between runs.
    if a.size < 2 or np.std(a) == 0.0 or np.std(b) == 0.0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])

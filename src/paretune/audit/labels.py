"""Likely mislabeled rows: confident learning (cleanlab) on out-of-fold predicted probabilities.

Each row's probabilities come from a model that never saw that row (k-fold), so a row whose
label the rest of the data contradicts stands out instead of being memorised. Fast mode fits a
logistic regression on frozen sentence embeddings per fold (seconds); `finetune` mode gets the
probabilities from short fine-tunes of the run's model (finetune_probs.py), slower and closer to
what training will see.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from paretune.errors import ParetuneError


@dataclass
class LabelIssue:
    index: int  # position in the training rows
    score: float  # 1 - cleanlab's label quality (self-confidence): higher is more suspect
    given: int
    predicted: int
    flagged: bool  # cleanlab's find_label_issues counts it as an issue


def fold_splitter(labels: np.ndarray, folds: int, seed: int) -> StratifiedKFold:
    # A class rarer than the folds just misses some folds (sklearn warns); only too little data stops.
    largest = int(np.bincount(labels).max()) if len(labels) else 0
    if largest < 2:
        raise ParetuneError("the label audit needs at least 2 training rows of some label")
    warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
    return StratifiedKFold(n_splits=min(folds, largest), shuffle=True, random_state=seed)


def embedding_probs(features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities from a logistic regression per fold."""
    probs = np.zeros((len(labels), n_classes), dtype=np.float64)
    splits = list(fold_splitter(labels, folds, seed).split(features, labels))
    for fit_rows, held_rows in tqdm(splits, desc="label folds", unit="fold", leave=False):
        model = LogisticRegression(max_iter=2000, C=1.0)
        model.fit(features[fit_rows], labels[fit_rows])
        probs[np.ix_(held_rows, model.classes_)] = model.predict_proba(features[held_rows])
    return probs


def find_issues(labels: np.ndarray, probs: np.ndarray) -> list[LabelIssue]:
    """Every row ranked most-suspect first; `flagged` marks the ones confident learning counts."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    # Classes absent from training would break cleanlab's per-class thresholds: audit those present.
    present = np.unique(labels)
    remap = {int(c): i for i, c in enumerate(present)}
    dense_labels = np.array([remap[int(label)] for label in labels])
    dense_probs = probs[:, present] / probs[:, present].sum(1, keepdims=True).clip(min=1e-12)
    quality = get_label_quality_scores(dense_labels, dense_probs, method="self_confidence")
    flagged = np.zeros(len(labels), dtype=bool)
    if len(present) > 1:
        flagged = find_label_issues(dense_labels, dense_probs, filter_by="prune_by_noise_rate")
    predicted = present[dense_probs.argmax(1)]
    order = np.argsort(quality, kind="stable")
    return [LabelIssue(int(i), round(float(1 - quality[i]), 6), int(labels[i]), int(predicted[i]),
                       bool(flagged[i])) for i in order]

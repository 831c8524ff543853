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
        fit_classes = np.unique(labels[fit_rows])
        if len(fit_classes) == 1:  # a label with one row, held out: the rest can only say the other
            probs[held_rows, fit_classes[0]] = 1.0
            continue
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


# The audit's model must close at least this share of the gap between always answering the largest
# class and a perfect score before its suspects are worth reading (docs/audit.md). At 74.6% on a
# balanced binary set (0.49 of the gap), the sentiment example's top suspects were mostly correctly
# labelled negations that a fine-tune scores perfectly.
MIN_SKILL = 0.6


def reliability(accuracy: float, labels: np.ndarray) -> dict:
    """How far the out-of-fold accuracy is above the majority baseline, and whether that is enough."""
    majority = float(np.bincount(labels).max() / len(labels))
    skill = (accuracy - majority) / (1 - majority) if majority < 1 else 0.0
    reliable = skill >= MIN_SKILL
    warning = None if reliable else (
        f"the audit's own model is weak (out-of-fold accuracy {accuracy:.1%} against {majority:.1%} for always "
        f"answering the largest class): its suspect labels are unreliable, many will be correct but hard rows. "
        "Try --mode both or finetune, or a stronger model.name_or_path, before dropping or relabelling rows")
    return {"majority_baseline": round(majority, 4), "skill": round(skill, 4), "reliable": reliable,
            "warning": warning}

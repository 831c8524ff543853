"""Exact and near duplicates: within the training file, and across train/validation/test (leaks).

Exact means the same text once case and whitespace are ignored; near means cosine similarity of
the sentence embeddings at or above the threshold. A training row that repeats a validation or
test row inflates the reported score, so those are reported apart as leaks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

CHUNK = 2048  # rows of the similarity matrix computed at once (memory: CHUNK x rows floats)


@dataclass
class Pair:
    index: int  # the later (train) row, the one a filtered copy drops
    other: int  # the row it repeats, in the other split (or an earlier train row)
    similarity: float
    exact: bool


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _exact_pairs(texts: list[str], others: list[str] | None) -> dict[tuple[int, int], Pair]:
    first: dict[str, int] = {}
    for j, text in enumerate(others if others is not None else []):
        first.setdefault(normalised(text), j)
    pairs = {}
    for i, text in enumerate(texts):
        key = normalised(text)
        if key in first:
            pairs[(i, first[key])] = Pair(i, first[key], 1.0, True)
        elif others is None:
            first[key] = i  # within one file: the first copy is the one kept
    return pairs


def find_pairs(texts: list[str], embeddings: np.ndarray, threshold: float,
               other_texts: list[str] | None = None, other_embeddings: np.ndarray | None = None) -> list[Pair]:
    """Duplicate pairs, most similar first. With `other_*`, pairs between the two sets (leaks);
    without, pairs within `texts`, each later row matched to its most similar earlier row."""
    within = other_texts is None
    pairs = _exact_pairs(texts, other_texts)
    exact_rows = {p.index for p in pairs.values()}
    others = embeddings if within else other_embeddings
    for start in range(0, len(texts), CHUNK):
        sims = embeddings[start:start + CHUNK] @ others.T
        if within:  # only earlier rows count, and never the row itself
            rows = np.arange(start, start + len(sims))[:, None]
            sims[np.arange(others.shape[0])[None, :] >= rows] = -1.0
        best = sims.argmax(1)
        best_sim = sims[np.arange(len(sims)), best]
        for offset in np.flatnonzero(best_sim >= threshold):
            i = start + int(offset)
            if i not in exact_rows:
                pairs[(i, int(best[offset]))] = Pair(i, int(best[offset]), float(best_sim[offset]), False)
    return sorted(pairs.values(), key=lambda p: (-p.similarity, p.index))

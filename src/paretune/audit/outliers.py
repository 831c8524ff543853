"""Outliers and rows of odd length.

Outliers: rows far from their nearest training neighbours in embedding space (cleanlab's
out-of-distribution score on features), often another language, boilerplate or a broken row.
Length: rows with no word at all (only punctuation or symbols) and rows longer than
data.max_length tokens, which training silently truncates.
"""
from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"\w")


def outlier_scores(embeddings: np.ndarray, neighbours: int = 10) -> np.ndarray:
    """Per row, higher is more of an outlier (1 - cleanlab's OOD score, which is in [0, 1])."""
    from cleanlab.outlier import OutOfDistribution

    k = max(1, min(neighbours, len(embeddings) - 1))
    scores = OutOfDistribution(params={"k": k}).fit_score(features=embeddings)
    return 1.0 - np.asarray(scores, dtype=np.float64)


def length_problems(texts: list[str], token_counts: list[int], max_length: int) -> list[tuple[int, str, int]]:
    """(row index, problem, tokens) for rows with no word or over max_length tokens."""
    found = []
    for i, (text, tokens) in enumerate(zip(texts, token_counts)):
        if not _WORD.search(text):
            found.append((i, "no word characters", tokens))
        elif tokens > max_length:
            found.append((i, f"{tokens} tokens, truncated to {max_length}", tokens))
    return found


def token_counts(texts: list[str], tokenizer) -> list[int]:
    """Tokens per text including the model's special tokens, without truncation."""
    ids = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    return [len(row) for row in ids]

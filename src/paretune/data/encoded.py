"""Encoded examples: what a task's `encode` returns and what batches are cut from.

A task decides what an example becomes (token ids, per-token labels, word positions, later pixel
values or prompt masks): `Encoded` only holds named per-example arrays and the stacked targets,
so a new task never needs a new field here. The task that made them knows what each array means
and how to collate a batch of them (`Task.collate`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class Encoded:
    """Named per-example arrays, ragged (no padding), ready for length-aware batching.

    `arrays[name][i]` is example i's array `name`, e.g. `input_ids`, `token_labels`,
    `word_starts`; each is also readable as an attribute (`encoded.input_ids`). `labels` holds one
    target per example, stacked (int class, float value, multi-hot row), or None. `size_key` names
    the array whose length is an example's size for token-budget batching.
    """

    def __init__(self, labels: np.ndarray | None = None, *, size_key: str = "input_ids",
                 **arrays: list[np.ndarray] | None):
        self.arrays: dict[str, list[np.ndarray]] = {k: v for k, v in arrays.items() if v is not None}
        self.labels = labels
        self.size_key = size_key
        if size_key not in self.arrays:
            raise ValueError(f"Encoded: no array {size_key!r} to size examples by (have {list(self.arrays)})")

    def __getattr__(self, name: str) -> list[np.ndarray]:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(f"Encoded has no array {name!r} (has {', '.join(arrays)})")

    def get(self, name: str) -> list[np.ndarray] | None:
        return self.arrays.get(name)

    def __len__(self) -> int:
        return len(self.arrays[self.size_key])

    def lengths(self) -> np.ndarray:
        sized = self.arrays[self.size_key]
        return np.fromiter((len(a) for a in sized), dtype=np.int64, count=len(sized))

    def n_tokens(self) -> int:
        return int(self.lengths().sum())


@dataclass
class EvalSet:
    """Encoded examples with their targets as the task parsed them (what metrics compare with)."""

    encoded: Encoded
    targets: list[Any]

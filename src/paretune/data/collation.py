"""Turning a list of example indices into padded tensors: the pieces every task's `collate` uses.

`collate_text` is the collation of a task whose examples are token ids with one target each
(classification, multilabel, regression); tasks with more per-example arrays call it and add
theirs with `pad_rows` (NER adds per-token labels and word positions).
"""
from __future__ import annotations

import numpy as np
import torch

from paretune.data.encoded import Encoded


def pad_rows(rows: list[np.ndarray], width: int, value: int, dtype=np.int64) -> np.ndarray:
    """Ragged rows as one [len(rows), width] array, filled with `value` after each row's end."""
    out = np.full((len(rows), width), value, dtype=dtype)
    for j, r in enumerate(rows):
        out[j, : len(r)] = r
    return out


def collate_text(encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids padded with `pad_id`, its attention_mask, the example indices and their labels."""
    rows = [encoded.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=np.int64)
    for j, r in enumerate(rows):  # numpy fills, one copy into torch
        input_ids[j, : len(r)] = r
        attention[j, : len(r)] = 1
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "index": torch.as_tensor(indices, dtype=torch.int64),
    }
    if encoded.labels is not None:
        batch["labels"] = torch.from_numpy(encoded.labels[indices])
    return batch

"""The running batch's KV cache: one left-padded transformers DynamicCache, laid out again only when
the batch's membership changes.

Row i of every layer's keys and values, and of the attention mask, belongs to the i-th running
sequence. Sequences have different lengths, so each row is padded on the left (mask 0), and every
decode step appends one column to all rows. A new group of sequences, prefilled together, is
merged by padding the narrower of the two on the left; a finished sequence's row is dropped, and
columns that no remaining row uses are cut from the left so padding does not pile up.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache


def layer_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return F.pad(tensor, pad)


class KVBatch:
    def __init__(self):
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, width] long: 1 where a row has a token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    def grow(self) -> None:
        """One more column for the token every row is about to add (a decode step)."""
        self.mask = F.pad(self.mask, (0, 1), value=1)

    def add(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append the rows of a freshly prefilled group (its cache and its [rows, width] mask)."""
        if self.mask is None:
            self.cache, self.mask = cache, mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        layers = [(torch.cat([_pad_left(k0, width, 2), _pad_left(k1, width, 2)]),
                   torch.cat([_pad_left(v0, width, 2), _pad_left(v1, width, 2)]))
                  for (k0, v0), (k1, v1) in zip(layer_tensors(self.cache), layer_tensors(cache))]
        self.cache = DynamicCache(ddp_cache_data=layers)
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(mask, width, 1)])

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order); cut the columns no kept row uses."""
        if not rows:
            self.cache, self.mask = None, None
            return
        index = torch.as_tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        layers = [(k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
                  for k, v in layer_tensors(self.cache)]
        self.cache = DynamicCache(ddp_cache_data=layers)
        self.mask = mask[:, start:].contiguous()

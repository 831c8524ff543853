"""The running batch's KV cache: one left-padded transformers DynamicCache whose layers keep spare
columns, so a decode step writes its new column in place; laid out again only when the batch's
membership changes.

Row i of every layer's keys and values, and of the attention mask, belongs to the i-th running
sequence. Sequences have different lengths, so each row is padded on the left (mask 0), and every
decode step appends one column to all rows. A new group of sequences, prefilled together, is
merged by padding the narrower of the two on the left; a finished sequence's row is dropped, and
columns that no remaining row uses are cut from the left so padding does not pile up.

Why spare columns: transformers' DynamicLayer concatenates the whole cache with the new column at
every step, in every layer (a copy of all keys and values per generated token, plus an allocation),
which was a tenth of a decode step at 8 rows on CPU. `RoomyLayer` writes into preallocated room and
hands attention a view of the columns in use; it reallocates (a copy) once every `ROOM` steps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

ROOM = 64  # spare columns kept after the ones in use: one reallocation per ROOM decode steps


class RoomyLayer(DynamicLayer):
    """A DynamicLayer that appends in place into preallocated columns; `keys`/`values` are views."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self._key_room = self._value_room = None
        self._length = 0
        self._place(keys, values, 0)

    def _place(self, keys: torch.Tensor, values: torch.Tensor, at: int) -> None:
        """Write columns from `at` on, reallocating with ROOM spare columns when they do not fit."""
        end = at + keys.shape[-2]
        if self._key_room is None or end > self._key_room.shape[-2]:
            shape = list(keys.shape)
            shape[-2] = end + ROOM
            key_room, value_room = keys.new_empty(shape), values.new_empty(shape[:-1] + [values.shape[-1]])
            if at:
                key_room[..., :at, :] = self._key_room[..., :at, :]
                value_room[..., :at, :] = self._value_room[..., :at, :]
            self._key_room, self._value_room = key_room, value_room
        self._key_room[..., at:end, :] = keys
        self._value_room[..., at:end, :] = values
        self._length = end
        self.keys, self.values = self._key_room[..., :end, :], self._value_room[..., :end, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self._place(key_states, value_states, self._length)
        return self.keys, self.values


def roomy_cache(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = [RoomyLayer(k, v) for k, v in layers]
    return cache


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
            self.cache, self.mask = roomy_cache(layer_tensors(cache)), mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        layers = [(torch.cat([_pad_left(k0, width, 2), _pad_left(k1, width, 2)]),
                   torch.cat([_pad_left(v0, width, 2), _pad_left(v1, width, 2)]))
                  for (k0, v0), (k1, v1) in zip(layer_tensors(self.cache), layer_tensors(cache))]
        self.cache = roomy_cache(layers)
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
        self.cache = roomy_cache(layers)
        self.mask = mask[:, start:].contiguous()

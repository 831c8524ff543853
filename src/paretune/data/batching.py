"""The one seam through which batches are formed: a batch sampler and a collator.

Two batchings share this seam:
- fixed `batch_size`: a seeded permutation cut into equal batches (what HF Trainer does);
- `batch_tokens`: length-bucketed batches whose padded size (rows x longest row) stays under a
  token budget. Short texts then ride in large batches and long ones in small ones, so almost
  no compute goes to padding and each step does a similar amount of work.
Both are deterministic functions of (seed, epoch), which is what makes mid-epoch resume exact:
a resumed run rebuilds the same batch order and skips the batches already done.

With N processes (data parallel) every process plans the same global batches and takes every
N-th row of each, so a config gives the same global batches, steps and learning rate on any
number of processes; `BatchPlan.share` tells the loop how to weight its part of the loss so the
averaged gradient equals the one-process gradient (docs/distributed.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from paretune.data.collation import collate_text
from paretune.data.encoded import Encoded

# (encoded, example indices, pad id) -> the batch's tensors: a task's `collate`.
Collate = Callable[[Encoded, list[int], int], dict[str, torch.Tensor]]


# `batch_tokens: auto` aims at this many optimizer steps per epoch, within these budgets: small
# datasets still get enough updates to learn in one epoch, large ones get big batches that keep
# an accelerator busy (4,096 tokens is where SST-2 on an H100 stops gaining from larger batches).
# The floor is a trade: at 256 tokens the per-step cost (optimizer, clipping, zeroing: ~90 ms for
# MiniLM on the 2-core CPU) is ~30% of a step, but a 512 floor cut one-epoch runs on 2,000 rows to
# 55 steps and lost accuracy (SST-2 80.4 -> 79.1%, CoNLL F1 0.80 -> 0.66): bench/RESULTS.md.
AUTO_STEPS_PER_EPOCH = 200
AUTO_MIN_TOKENS, AUTO_MAX_TOKENS = 256, 4096
DEFAULT_BATCH_SIZE = 32


def resolve_batching(config, epoch_tokens: int, longest: int,
                     min_tokens: int | None = None) -> tuple[int | None, int | None]:
    """(batch_size, batch_tokens) with exactly one set, from the training config; `min_tokens`: the
    task's floor for `auto` (generation: 1,024), else AUTO_MIN_TOKENS."""
    if config.batch_size is not None:
        return config.batch_size, None
    if config.batch_tokens is None:
        return DEFAULT_BATCH_SIZE, None
    if config.batch_tokens == "auto":
        budget = epoch_tokens // AUTO_STEPS_PER_EPOCH
        tokens = int(min(AUTO_MAX_TOKENS, max(min_tokens or AUTO_MIN_TOKENS, budget)))
    else:
        tokens = config.batch_tokens
    # The longest example must fit in a batch of its own.
    return None, max(tokens, int(longest))


@dataclass(frozen=True)
class BatchShare:
    """One process's part of a global batch, and the whole batch's counts."""

    rows: int  # rows of the global batch
    tokens: int  # real tokens of the global batch
    padded_tokens: int  # tokens computed on, over all processes (each pads its rows to its longest)
    loss_weight: float  # this process's fraction of the batch's loss terms (rows or labelled tokens)
    units: int = 0  # loss terms of the global batch (rows, or labelled tokens)


class BatchPlan(torch.utils.data.Sampler[list[int]]):
    """Yields lists of example indices (this process's rows); call `set_epoch` before each epoch."""

    def __init__(
        self,
        lengths: np.ndarray,
        *,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        sort_by_length: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        loss_units: np.ndarray | None = None,
        packed: bool = False,
    ):
        if (batch_size is None) == (batch_tokens is None):
            raise ValueError("give exactly one of batch_size and batch_tokens")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.sort_by_length = sort_by_length  # evaluation: fixed-size batches of similar lengths
        self.num_replicas, self.rank = num_replicas, rank
        # Terms each example adds to the task's mean loss: labelled tokens for token tasks,
        # else one per row (a multi-label row's labels scale every row alike).
        self.loss_units = None if loss_units is None else np.asarray(loss_units, dtype=np.int64)
        # The task lays a batch's examples end to end (packing): no padding, and a token budget
        # holds the examples' summed lengths, not rows x longest.
        self.packed = packed
        self.epoch = 0
        self._batches = self._all_batches()

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = self._all_batches()

    def _rows(self, batch: list[int], rank: int) -> list[int]:
        # Every num_replicas-th row: a length-bucketed batch is sorted by length, so each process
        # gets rows of the same lengths and the same amount of work.
        return batch[rank :: self.num_replicas]

    def _own_rows(self, batch: list[int]) -> list[int]:
        # A global batch with fewer rows than processes leaves some without any: they run one row
        # anyway (weighted 0) so that every process takes part in every gradient all-reduce.
        return self._rows(batch, self.rank) or batch[:1]

    def share(self, i: int) -> BatchShare:
        """Counts of global batch `i` and this process's weight in its loss."""
        batch = self._batches[i]
        parts = [self._rows(batch, r) for r in range(self.num_replicas)]
        units = [self._units(part) for part in parts]
        total = sum(units)
        # No loss terms at all (an NER batch with no labelled token): the loss is NaN on every
        # process, as on one, and the step is skipped; weight by rows only to keep it defined.
        weight = units[self.rank] / total if total else len(parts[self.rank]) / len(batch)
        padded = sum((int(self.lengths[part].sum()) if self.packed else len(part) * int(self.lengths[part].max()))
                     for part in parts if part)
        return BatchShare(len(batch), int(self.lengths[batch].sum()), padded, weight, int(total))

    def _units(self, rows: list[int]) -> int:
        return len(rows) if self.loss_units is None else int(self.loss_units[rows].sum())

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.batch_tokens is None:
            if self.sort_by_length:
                order = order[np.argsort(self.lengths[order], kind="stable")]
            return [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        # Stable sort of a shuffled order: equal-length examples still mix from epoch to epoch.
        by_length = order[np.argsort(self.lengths[order], kind="stable")]
        batches = self._cut_by_budget(by_length)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _cut_by_budget(self, indices: np.ndarray) -> list[list[int]]:
        batches, current, longest, total = [], [], 0, 0
        for idx in indices.tolist():
            length = int(self.lengths[idx])
            size = total + length if self.packed else max(longest, length) * (len(current) + 1)
            if current and size > self.batch_tokens:
                batches.append(current)
                current, longest, total = [], 0, 0
            current.append(idx)
            longest, total = max(longest, length), total + length
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.tail(0))

    def tail(self, start: int) -> "list[list[int]]":
        """This process's rows of this epoch's batches from `start` on: where a resumed run picks up."""
        if self.num_replicas == 1:
            return self._batches[start:]
        return [self._own_rows(batch) for batch in self._batches[start:]]

    def __len__(self) -> int:
        return len(self._batches)


class IndexDataset(torch.utils.data.Dataset):
    """Items are their own indices; the collator turns a list of indices into tensors."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class Collator:
    """Turns a list of example indices into tensors with a task's collation (default: text)."""

    def __init__(self, encoded: Encoded, pad_id: int, collate: Collate = collate_text):
        self.encoded, self.pad_id, self.collate = encoded, pad_id, collate

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.collate(self.encoded, indices, self.pad_id)


def make_loader(encoded: Encoded, plan, pad_id: int, pin_memory: bool = False, collate: Collate | None = None,
                workers: int = 0):
    """`plan` is a BatchPlan or any iterable of index lists (e.g. `plan.tail(start)`); `collate` is
    the task's (`task.collate`), by default the one of token ids with one target per example."""
    # A private generator: otherwise each new iterator draws a base seed from the global RNG,
    # which shifts the dropout stream of a resumed run against an uninterrupted one.
    return torch.utils.data.DataLoader(
        IndexDataset(len(encoded)),
        batch_sampler=plan,
        collate_fn=Collator(encoded, pad_id, collate or collate_text),
        pin_memory=pin_memory,
        num_workers=workers,  # a task's `loader_workers`: image decoding runs beside the model
        generator=torch.Generator(),
    )

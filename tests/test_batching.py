"""The batch seam: token budgets, determinism per (seed, epoch), sharding, collation."""
from __future__ import annotations

import numpy as np
import pytest

from paretune.data.batching import BatchPlan, Collator
from paretune.data.encoded import Encoded


def _lengths(n=500, seed=0):
    return np.random.default_rng(seed).integers(3, 60, size=n)


def test_token_budget_is_respected_and_every_example_used_once():
    lengths = _lengths()
    plan = BatchPlan(lengths, batch_tokens=256, seed=1)
    seen = []
    for batch in plan:
        assert len(batch) * lengths[batch].max() <= 256
        seen += batch
    assert sorted(seen) == list(range(len(lengths)))
    padded = sum(len(b) * lengths[b].max() for b in plan)
    assert padded / lengths.sum() < 1.1  # length bucketing leaves little padding


def test_plan_is_deterministic_per_epoch_and_changes_between_epochs():
    lengths = _lengths()
    a, b = BatchPlan(lengths, batch_size=32, seed=3), BatchPlan(lengths, batch_size=32, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert a.tail(5) == list(a)[5:]


def test_sharding_gives_disjoint_equal_shares():
    lengths = _lengths(301)
    shards = [BatchPlan(lengths, batch_tokens=200, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    ids = [set(i for batch in s for i in batch) for s in shards]
    assert not ids[0] & ids[1]


def test_exactly_one_batching_mode():
    with pytest.raises(ValueError):
        BatchPlan(np.array([3, 4]), batch_size=2, batch_tokens=10)


def test_collator_pads_and_masks():
    enc = Encoded(input_ids=[np.array([5, 6, 7]), np.array([8])], labels=np.array([1, 0]))
    batch = Collator(enc, pad_id=0)([1, 0])
    assert batch["input_ids"].tolist() == [[8, 0, 0], [5, 6, 7]]
    assert batch["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [0, 1]
    assert batch["index"].tolist() == [1, 0]


def test_auto_token_budget_scales_with_data_and_batch_size_opts_out():
    from paretune.config.schema import TrainingConfig
    from paretune.data.batching import resolve_batching

    auto = TrainingConfig()
    assert resolve_batching(auto, epoch_tokens=20_000, longest=40) == (None, 256)  # small data: floor
    assert resolve_batching(auto, epoch_tokens=400_000, longest=40) == (None, 2000)
    assert resolve_batching(auto, epoch_tokens=10**8, longest=40) == (None, 4096)  # cap
    assert resolve_batching(auto, epoch_tokens=20_000, longest=300) == (None, 300)  # longest fits
    assert resolve_batching(TrainingConfig(batch_size=8), 20_000, 40) == (8, None)
    assert resolve_batching(TrainingConfig(batch_tokens=1024), 20_000, 40) == (None, 1024)

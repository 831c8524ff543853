"""Replay: a sample of the old run's training rows, re-read from the data paths its config records,
mixed into the new training data (never into validation, which stays the new task's)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from paretune.config.schema import Config
from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.data.prepare import PreparedData, encode_cached, prepare_data, read_split
from paretune.data.token_cache import default_cache_dir
from paretune.tasks.base import Task


def old_training_rows(old_config: Config, share: float | None = None, count: int | None = None,
                      seed: int = 0) -> list[Example]:
    """A seeded sample of the old run's training rows: `share` of them, or `count`."""
    rows = read_split(old_config, "train", old_config.data.train)
    if old_config.data.max_train_rows:
        rows = rows[: old_config.data.max_train_rows]
    n = round(share * len(rows)) if share is not None else min(count or 0, len(rows))
    return random.Random(seed).sample(rows, n)


def encode_rows(task: Task, examples: list[Example], config: Config, file: str, tokenizer) -> Encoded:
    targets = task.parse(examples, file, config.data.label_column)
    cache = default_cache_dir() if config.data.cache_dir is None else config.data.cache_dir
    return encode_cached(task, examples, targets, tokenizer, config.data.max_length, Path(cache))[0]


def concatenate(first: Encoded, second: Encoded) -> Encoded:
    labels = None if first.labels is None else np.concatenate([first.labels, second.labels])
    arrays = {name: list(first.arrays[name]) + list(second.arrays[name]) for name in first.arrays}
    return Encoded(labels, size_key=first.size_key, **arrays)


def prepare_with_replay(config: Config, tokenizer, old_config: Config, share: float, seed: int) -> PreparedData:
    data = prepare_data(config, tokenizer)
    rows = old_training_rows(old_config, share=share, seed=seed)
    if rows:
        old = encode_rows(data.task, rows, config, old_config.data.train, tokenizer)
        data.train = concatenate(data.train, old)
    data.stats.update({"replayed_rows": len(rows), "replayed_from": old_config.data.train,
                       "train_rows": len(data.train), "train_tokens_per_epoch": data.train.n_tokens()})
    return data

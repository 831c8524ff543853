"""Hold out a validation set from the training data when the user gives no validation file.

The split is stratified so that each class is held out in proportion to its size: a plain random
split of a small, skewed data set can leave a rare class out of validation entirely, or take
every example of it away from training.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from paretune.errors import DataError, DataProblem

T = TypeVar("T")


def stratified_split(
    examples: Sequence[T],
    fraction: float,
    seed: int,
    key: Callable[[T], Hashable] | None = lambda ex: ex.label,
    *,
    file: str = "training data",
) -> tuple[list[T], list[T]]:
    """Split `examples` into (train, validation), about `fraction` of them in validation.

    `key` gives the class to stratify on; `None` means no stratification (a seeded shuffle
    split), which suits regression and other labels with no small set of values. The same seed
    gives the same split, and both parts keep the original order. Every class with two or more
    examples keeps at least one in train; a class with one example stays in train unless the
    other classes cannot fill validation. `file` only names the data in error messages.
    """
    if not 0 < fraction < 1:
        raise DataError(DataProblem(
            file, f"validation fraction must be between 0 and 1 (exclusive), got {fraction}; "
            "set data.validation_split",
        ))
    if len(examples) < 2:
        raise DataError(DataProblem(
            file, f"needs at least 2 examples to hold out a validation set, found {len(examples)}; "
            "add examples or give a validation file (data.validation)",
        ))
    validation_size = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    rng = random.Random(seed)
    if key is None:
        held_out = set(rng.sample(range(len(examples)), validation_size))
    else:
        held_out = _stratified_indices(_group_by(examples, key), len(examples), validation_size, rng)
    train = [ex for index, ex in enumerate(examples) if index not in held_out]
    validation = [ex for index, ex in enumerate(examples) if index in held_out]
    return train, validation


def _group_by(examples: Sequence[T], key: Callable[[T], Hashable]) -> list[list[int]]:
    """Indices of the examples of each class, classes in order of first appearance (so: deterministic)."""
    groups: dict[Any, list[int]] = {}
    for index, example in enumerate(examples):
        value = key(example)
        try:
            groups.setdefault(value, []).append(index)
        except TypeError:
            raise TypeError(
                f"stratified_split: key returned an unhashable {type(value).__name__}; "
                "pass a key that returns a hashable value, or key=None to split without stratifying"
            ) from None
    return list(groups.values())


def _stratified_indices(
    groups: list[list[int]], total: int, validation_size: int, rng: random.Random
) -> set[int]:
    """Pick `validation_size` indices, each class held out in proportion to its size."""
    for members in groups:
        rng.shuffle(members)
    # A class gives at most all but one example, so training always sees it.
    room = [len(members) - 1 for members in groups]
    ideal = [len(members) * validation_size / total for members in groups]
    quota = [min(room[g], math.floor(ideal[g])) for g in range(len(groups))]

    # Hand out what rounding down left over, largest remainder first; the shuffle breaks ties
    # at random instead of always favouring the classes that appear first in the file.
    order = list(range(len(groups)))
    rng.shuffle(order)
    order.sort(key=lambda g: quota[g] - ideal[g])
    missing = validation_size - sum(quota)
    while missing > 0 and any(quota[g] < room[g] for g in order):
        for g in order:
            if missing > 0 and quota[g] < room[g]:
                quota[g] += 1
                missing -= 1

    held_out = {index for g, members in enumerate(groups) for index in members[: quota[g]]}
    if missing > 0:
        # Mostly single-example classes (or unique keys, as with a continuous label): there is
        # nothing left to stratify, so fill validation from them rather than leave it short.
        singletons = [members[0] for members in groups if len(members) == 1]
        held_out.update(rng.sample(singletons, min(missing, len(singletons))))
    return held_out

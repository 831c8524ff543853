"""The held-out validation split: stratified, deterministic, never leaving a part empty."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from paretune.data.examples import Example
from paretune.data.split import stratified_split
from paretune.errors import DataError


def make_examples(labels) -> list[Example]:
    return [Example(f"text {row}", label, row) for row, label in enumerate(labels, 1)]


def rows(examples) -> list[int]:
    return [ex.row for ex in examples]


def test_partition_sizes_and_order():
    examples = make_examples(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    train, validation = stratified_split(examples, 0.2, seed=1)
    assert len(validation) == 20 and len(train) == 80
    assert sorted(rows(train) + rows(validation)) == list(range(1, 101))
    assert rows(train) == sorted(rows(train)) and rows(validation) == sorted(rows(validation))


def test_classes_held_out_in_proportion():
    examples = make_examples(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    _, validation = stratified_split(examples, 0.2, seed=3)
    assert Counter(ex.label for ex in validation) == {"a": 12, "b": 6, "c": 2}


def test_same_seed_same_split_other_seed_other_split():
    examples = make_examples(["a", "b"] * 50)
    first = stratified_split(examples, 0.3, seed=7)
    assert stratified_split(examples, 0.3, seed=7) == first
    assert rows(stratified_split(examples, 0.3, seed=8)[1]) != rows(first[1])


def test_every_class_keeps_one_in_train():
    examples = make_examples(["a"] * 2 + ["b"] * 3 + ["c"] * 20)
    train, validation = stratified_split(examples, 0.9, seed=0)
    assert set(ex.label for ex in train) == {"a", "b", "c"}
    assert validation


def test_small_fraction_still_gives_a_validation_example():
    train, validation = stratified_split(make_examples(["a", "b", "a"]), 0.01, seed=0)
    assert len(validation) == 1 and len(train) == 2


def test_two_examples_is_enough():
    train, validation = stratified_split(make_examples(["a", "a"]), 0.5, seed=0)
    assert len(train) == len(validation) == 1


def test_unique_keys_fall_back_to_a_random_split():
    examples = make_examples([float(value) for value in range(50)])
    train, validation = stratified_split(examples, 0.2, seed=0)
    assert len(validation) == 10 and len(train) == 40


def test_singleton_classes_stay_in_train_when_others_can_fill_validation():
    examples = make_examples(["a"] * 20 + ["b"] * 20 + ["rare1", "rare2"])
    train, _ = stratified_split(examples, 0.25, seed=5)
    assert {"rare1", "rare2"} <= {ex.label for ex in train}


def test_no_stratification_with_list_labels():
    examples = make_examples([["O", "B-PER"], ["O"], ["B-LOC"], ["O", "O"]] * 5)
    train, validation = stratified_split(examples, 0.25, seed=2, key=None)
    assert len(validation) == 5 and len(train) == 15
    assert stratified_split(examples, 0.25, seed=2, key=None) == (train, validation)


def test_custom_key_for_list_labels():
    examples = make_examples([["x"], ["x", "y"]] * 10)
    _, validation = stratified_split(examples, 0.2, seed=0, key=lambda ex: tuple(ex.label))
    assert Counter(tuple(ex.label) for ex in validation) == {("x",): 2, ("x", "y"): 2}


def test_unhashable_key_explains_the_fix():
    with pytest.raises(TypeError, match="key=None"):
        stratified_split(make_examples([["O"], ["O"]]), 0.5, seed=0)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, math.nan])
def test_fraction_out_of_range(fraction):
    with pytest.raises(DataError) as caught:
        stratified_split(make_examples(["a", "b", "c"]), fraction, seed=0, file="train.csv")
    message = str(caught.value)
    assert "train.csv" in message and "data.validation_split" in message


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_examples(count):
    with pytest.raises(DataError) as caught:
        stratified_split(make_examples(["a"] * count), 0.1, seed=0)
    message = str(caught.value)
    assert "at least 2 examples" in message and f"found {count}" in message

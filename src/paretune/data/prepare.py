"""From config to encoded train/validation/test sets, with every check done before training.

Order matters: all files are read and checked (columns, empty texts, labels, label sets)
before the model is loaded, so bad data fails in seconds, not after an hour of training.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paretune.config.schema import Config
from paretune.data.augment import augmented, check_augment
from paretune.data.class_checks import check_held_out_classes, warn_single_example_classes
from paretune.data.encoded import Encoded, EvalSet
from paretune.data.examples import Example
from paretune.data.knowledge import with_knowledge
from paretune.data.readers import warn_duplicates
from paretune.data.split import stratified_split
from paretune.data.token_cache import cache_key, cached_encode, default_cache_dir
from paretune.errors import DataError, DataProblem
from paretune.tasks import Task, task_class

log = logging.getLogger("paretune.data")


@dataclass
class PreparedData:
    task: Task
    train: Encoded
    validation: EvalSet | None
    test: EvalSet | None
    validation_examples: list[Example] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def read_split(config: Config, role: str, path: str, require_labels: bool = True) -> list[Example]:
    data = config.data
    task_cls = task_class(config.task.type)
    return task_cls.read_examples(
        path,
        config.task,
        fmt=data.format,
        text_column=data.text_column,
        label_column=data.label_column,
        word_level=task_cls.word_level,
        require_labels=require_labels and task_cls.needs_labels,
        encoding=data.encoding,
        split=role,
    )


@dataclass
class CheckedData:
    """Every example and target of a run, read and checked, not yet tokenized."""

    task: Task
    train: list[Example]
    train_targets: list[Any]
    validation: list[Example]
    validation_targets: list[Any]
    test: list[Example] | None = None
    test_targets: list[Any] | None = None
    knowledge: dict[str, Any] | None = None  # data.knowledge's rows added (data.json)


def _read_splits(config: Config) -> tuple[list[Example], list[Example], str, list[Example] | None]:
    """Train, validation (a file, or held out from train), the validation's name, and test."""
    data = config.data
    train_examples = read_split(config, "train", data.train)
    if data.max_train_rows:
        train_examples = train_examples[: data.max_train_rows]
    if data.validation:
        validation_examples = read_split(config, "validation", data.validation)
        validation_name = data.validation
    else:
        train_examples, validation_examples = stratified_split(
            train_examples, data.validation_split, data.seed, key=task_class(config.task.type).split_key()
        )
        validation_name = f"{data.train} (held-out {data.validation_split:.0%})"
        log.info("no data.validation: held out %d of %d training rows (stratified)",
                 len(validation_examples), len(train_examples) + len(validation_examples))
    test_examples = read_split(config, "test", data.test) if data.test else None
    return train_examples, validation_examples, validation_name, test_examples


def check_data(config: Config) -> CheckedData:
    """Read every data file and check every label: all that can fail in the data, before any model."""
    task_cls = task_class(config.task.type)
    data = config.data
    train_examples, validation_examples, validation_name, test_examples = _read_splits(config)
    # Knowledge rows join training only, after validation was held out from the file's rows.
    train_examples, knowledge = with_knowledge(data.knowledge, train_examples, task_cls)
    label_names = task_cls.infer_labels(train_examples, config.task)
    if len(label_names) < task_cls.min_labels:
        found = "a single label" if len(label_names) == 1 else f"{len(label_names)} labels"
        raise DataError(DataProblem(data.train, f"field '{data.label_column}' has {found} {label_names}; "
                                    f"{task_cls.name} needs at least {task_cls.min_labels}"))
    task = task_cls(config.task, label_names)
    field_name = data.label_column
    train_targets = task.parse(train_examples, data.train, field_name)
    if not data.validation:
        check_held_out_classes(task, train_examples, validation_examples, data.train, field_name)
    warn_single_example_classes(task, train_examples, data.train, field_name)
    validation_targets = task.parse(validation_examples, validation_name, field_name)
    test_targets = task.parse(test_examples, data.test, field_name) if test_examples else None
    warn_duplicates(train_examples, data.train)
    return CheckedData(task, train_examples, train_targets, validation_examples, validation_targets,
                       test_examples, test_targets, knowledge)


def prepare_data(config: Config, tokenizer) -> PreparedData:
    started = time.perf_counter()
    data = config.data
    checked = check_data(config)
    task = checked.task
    train_examples, train_targets = checked.train, checked.train_targets
    validation_examples, validation_targets = checked.validation, checked.validation_targets
    test_examples, test_targets = checked.test, checked.test_targets
    label_names = task.label_names

    cache_dir = Path(data.cache_dir) if data.cache_dir else default_cache_dir()
    cache_dir = cache_dir if task.cache_encoding else None
    encode = lambda exs, tg: encode_cached(task, exs, tg, tokenizer, data.max_length, cache_dir)  # noqa: E731
    train, hit = encode(train_examples, train_targets)
    rewrites, paraphrase_report = paraphrased(config, task, tokenizer, train_examples, train_targets)
    train = augmented(train, data.augment, tokenizer, task.word_level, rewrites)  # training batches only
    validation = EvalSet(encode(validation_examples, validation_targets)[0], validation_targets)
    test = EvalSet(encode(test_examples, test_targets)[0], test_targets) if test_examples else None
    stats = {
        "train_rows": len(train),
        "validation_rows": len(validation.encoded),
        "test_rows": len(test.encoded) if test else 0,
        "train_tokens_per_epoch": train.n_tokens(),
        "labels": label_names,
        "tokenization_cache_hit": hit,
        "seconds": round(time.perf_counter() - started, 3),
        **task.data_stats(train, data.max_length),  # generation: rows whose prompt was cut (also logged)
        **({"paraphrase": paraphrase_report} if paraphrase_report else {}),
        **({"knowledge": checked.knowledge} if checked.knowledge else {}),
    }
    return PreparedData(task, train, validation, test, validation_examples, stats)


def paraphrased(config: Config, task: Task, tokenizer, examples, targets) -> tuple[dict | None, dict | None]:
    """(row index -> token ids of its paraphrase, report), or (None, None) when paraphrases are off."""
    options = config.data.augment
    if not check_augment(options, tokenizer, task.word_level) or not options.paraphrase:
        return None, None
    from paretune.data.paraphrase import paraphrase_texts

    root = Path(config.data.cache_dir) if config.data.cache_dir else default_cache_dir()
    texts, report = paraphrase_texts([ex.text for ex in examples], options, root)
    rows = [i for i, text in enumerate(texts) if text is not None]
    rewritten = [replace(examples[i], text=texts[i]) for i in rows]
    encoded = task.encode(rewritten, [targets[i] for i in rows] if targets is not None else None, tokenizer,
                          config.data.max_length)
    return dict(zip(rows, encoded.input_ids)), report


def encode_cached(task: Task, examples, targets, tokenizer, max_length: int, cache_dir: Path | None):
    parts = {**task.encoding_key(), "max_length": max_length, "labelled": targets is not None}
    key = cache_key(tokenizer, parts, examples)
    return cached_encode(cache_dir, key, lambda: task.encode(examples, targets, tokenizer, max_length))

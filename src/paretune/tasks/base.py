"""What a task provides: label parsing, encoding, head, loss, metrics, and readable predictions.

A task object is built once per run from the task config and the label names, and everything
task-specific goes through it, so the training loop and the predictor never branch on task type.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from paretune.config.schema import TaskConfig
from paretune.data.examples import Example
from paretune.errors import DataError, DataProblem
from paretune.tasks.raw_labels import marker_problem, scalar_problem, warn_declared_markers

IGNORE_INDEX = -100  # target ignored by the loss (special tokens, later sub-words)


@dataclass
class Encoded:
    """Tokenized examples, ragged (no padding), ready for length-aware batching.

    `labels` holds one target per example for sequence tasks (int class, float value or a
    multi-hot row); `token_labels` holds per-token targets for token tasks (-100 = ignored), and
    `word_starts` the position of each word's first sub-token, used to score at word level.
    """

    input_ids: list[np.ndarray]
    labels: np.ndarray | None = None
    token_labels: list[np.ndarray] | None = None
    word_starts: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self))

    def n_tokens(self) -> int:
        return int(self.lengths().sum())


class Task(ABC):
    name: ClassVar[str]
    auto_model: ClassVar[str]  # transformers Auto class holding the right head
    default_metric: ClassVar[str]
    # The numbers `metrics` returns (besides "loss"): training.metric is checked against them
    # before training starts. tests/test_run_folder.py checks them against a real evaluation.
    metric_names: ClassVar[tuple[str, ...]]
    word_level: ClassVar[bool] = False  # examples are word lists (token classification)
    lower_is_better: ClassVar[frozenset[str]] = frozenset(
        {"loss", "mse", "rmse", "mae", "hamming_loss"}
    )

    def __init__(self, config: TaskConfig, label_names: list[str]):
        self.config = config
        self.label_names = list(label_names)
        self.label_to_id = {name: i for i, name in enumerate(self.label_names)}

    # --- labels -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def infer_labels(cls, examples: list[Example], config: TaskConfig) -> list[str]:
        """Label names in a stable order, from the config or the training examples."""

    @abstractmethod
    def parse_label(self, raw: Any) -> Any:
        """Raw label -> model target; raises ValueError with a message naming the bad value."""

    def check_raw(self, raw: Any) -> list[str]:
        """The stored label's values as text, or ValueError if it is no label this task can take.

        The default suits one label per row: a list is refused and a missing-value marker
        (`NaN`, `None`, `NA`, ...) is refused unless task.labels declares it.
        """
        problem = scalar_problem(raw) or marker_problem(raw, self.config.labels)
        if problem:
            raise ValueError(problem)
        return [label_text(raw)]

    def parse(self, examples: list[Example], file: str, field: str) -> list[Any]:
        """Parse every label, collecting all problems with their row before failing."""
        targets, problems, values = [], [], []
        for ex in examples:
            try:
                values += [(ex.row, value) for value in self.check_raw(ex.label)]
                targets.append(self.parse_label(ex.label))
            except ValueError as err:
                problems.append(DataProblem(file, str(err), row=ex.row, field=field, line=ex.line))
        if problems:
            raise DataError(problems)
        warn_declared_markers(values, file, field)
        return targets

    # --- model --------------------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.label_names),
            "id2label": dict(enumerate(self.label_names)),
            "label2id": dict(self.label_to_id),
        }

    @abstractmethod
    def encode(self, examples: list[Example], targets: list[Any] | None, tokenizer, max_length: int) -> Encoded:
        """Tokenize examples (targets None for unlabelled prediction input)."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ...

    # --- evaluation and prediction ------------------------------------------------------
    @abstractmethod
    def outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per-example outputs of one batch (probabilities, values or per-word label ids)."""

    @abstractmethod
    def metrics(self, outputs: list[np.ndarray], targets: list[Any]) -> dict[str, Any]:
        ...

    @abstractmethod
    def readable(self, output: np.ndarray, example: Example, all_scores: bool = False) -> dict[str, Any]:
        """One prediction as JSON-ready data for users (label and score, value, or entities)."""

    def greater_is_better(self, metric: str) -> bool:
        return metric not in self.lower_is_better


def tokenize_texts(tokenizer, texts: list[str], max_length: int) -> list[np.ndarray]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)
    return [np.asarray(ids, dtype=np.int32) for ids in encoded["input_ids"]]


def check_known(value: str, known: dict[str, int], what: str = "label") -> int:
    if value not in known:
        shown = ", ".join(list(known)[:20])
        raise ValueError(f"unknown {what} {value!r} (known: {shown})")
    return known[value]


def label_text(raw: Any) -> str:
    """Labels are compared as text so 1, 1.0 and "1" from different formats agree."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return str(raw).strip()


def sort_labels(values: set[str]) -> list[str]:
    """Numeric labels sort numerically (so "10" follows "9"), the rest alphabetically."""
    key: Callable[[str], Any]
    try:
        [float(v) for v in values]
        key = float
    except ValueError:
        key = str
    return sorted(values, key=key)

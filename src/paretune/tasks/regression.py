"""Regression: one real value per text, trained with mean squared error."""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from paretune.data.examples import Example
from paretune.evaluation.regression_metrics import regression_metrics
from paretune.data.encoded import Encoded
from paretune.tasks.base import Task, TaskOptions, tokenize_texts
from paretune.tasks.raw_labels import is_missing_marker


class RegressionOptions(TaskOptions):
    type: Literal["regression"] = "regression"


class RegressionTask(Task):
    name = "regression"
    options = RegressionOptions
    auto_model = "AutoModelForSequenceClassification"
    default_metric = "mse"
    metric_names = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
    soft_targets = "value"
    problem_type = "regression"
    read_logits = "logits[0, 0].item()  # the predicted value"

    @classmethod
    def infer_labels(cls, examples: list[Example], config: TaskOptions) -> list[str]:
        return ["value"]

    def check_raw(self, raw: Any) -> list[str]:
        # float() would take "NaN" and refuse a list with a message that hides what was found.
        if is_missing_marker(raw):
            raise ValueError(f"label {raw!r} marks a missing value; fill in a number or drop the row")
        if isinstance(raw, (list, tuple, dict, np.ndarray)):
            raise ValueError(f"expected a number, found a {type(raw).__name__} {raw!r}")
        return []

    def parse_label(self, raw: Any) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return value

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        ids = tokenize_texts(tokenizer, [ex.text for ex in examples], max_length)
        labels = None if targets is None else np.asarray(targets, dtype=np.float32)
        return Encoded(input_ids=ids, labels=labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits.float().squeeze(-1), labels.float())

    def outputs(self, logits, batch) -> list[np.ndarray]:
        return list(logits.float().squeeze(-1).cpu().numpy().reshape(-1, 1))

    def metrics(self, outputs, targets) -> dict[str, Any]:
        predicted = np.concatenate(outputs)
        return regression_metrics(np.asarray(targets, dtype=np.float64), predicted.astype(np.float64))

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        return {"value": float(output[0])}

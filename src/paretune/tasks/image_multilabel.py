"""Multi-label image classification: each image carries any number of labels (a sigmoid per label).

Images are read, checked, decoded and augmented as for single-label images (image_classification.py);
labels are read as the text multilabel task reads them (tasks/multilabel.py): a list, or a text cell
split on `label_delimiter` ("cat,dog"). The loss is binary cross-entropy per label; the metrics are
the multilabel ones (exact match, micro/macro F1, hamming loss). Rows come from a table (CSV, JSONL,
Parquet with an image and a label column): a folder per class holds one label per image.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.data.examples import Example
from paretune.tasks.image_classification import ImageClassificationOptions, ImageClassificationTask
from paretune.tasks.multilabel import MultilabelTask


class ImageMultilabelOptions(ImageClassificationOptions):
    type: Literal["image-multilabel"] = "image-multilabel"  # type: ignore[assignment]
    label_delimiter: str = Field(",", description="Separator of labels in a text cell.")
    threshold: float = Field(0.5, description="Probability above which a label is predicted.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Targets pulled towards 0.5 by this much.")


class ImageMultilabelTask(ImageClassificationTask):
    name = "image-multilabel"
    options = ImageMultilabelOptions
    config: ImageMultilabelOptions
    default_metric = MultilabelTask.default_metric
    metric_names = MultilabelTask.metric_names
    min_labels = 0
    stratify = False  # a row's labels are a set: no strata
    soft_targets = "sigmoid"
    problem_type = "multi_label_classification"
    confusion_picture = False  # no single true class per image
    read_logits = MultilabelTask.read_logits

    # Labels: the text multilabel task's rules, verbatim (they read only the options).
    @classmethod
    def infer_labels(cls, examples: list[Example], config: ImageMultilabelOptions) -> list[str]:
        return MultilabelTask.infer_labels(examples, config)

    def check_raw(self, raw: Any) -> list[str]:
        return MultilabelTask.check_raw(self, raw)  # type: ignore[arg-type]

    def parse_label(self, raw: Any) -> np.ndarray:
        return MultilabelTask.parse_label(self, raw)  # type: ignore[arg-type]

    def stack_targets(self, targets: list[Any]) -> np.ndarray:
        return np.stack(targets).astype(np.float32)  # a 0/1 row per image

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        targets = labels.float() * (1 - self.config.label_smoothing) + self.config.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    outputs = MultilabelTask.outputs  # sigmoid scores, and metrics at the configured threshold
    metrics = MultilabelTask.metrics

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        return MultilabelTask.readable(self, output, example, all_scores)  # type: ignore[arg-type]

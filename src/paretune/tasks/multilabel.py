"""Multi-label classification: each text carries any number of labels (sigmoid per label)."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.data.examples import Example
from paretune.evaluation.classification_metrics import multilabel_metrics
from paretune.data.encoded import Encoded
from paretune.tasks.base import Task, TaskOptions, check_known, label_text, sort_labels, tokenize_texts
from paretune.tasks.raw_labels import list_item_problem


def split_labels(raw: Any, delimiter: str) -> list[str]:
    """A list stays a list; a text cell "sports,politics" is split on the delimiter."""
    if isinstance(raw, (list, tuple, np.ndarray)):
        values = [label_text(v) for v in raw]
    else:
        values = [v.strip() for v in str(raw).split(delimiter)]
    return [v for v in values if v]


class MultilabelOptions(TaskOptions):
    type: Literal["multilabel"] = "multilabel"
    label_delimiter: str = Field(",", description="Multilabel: separator of labels in a text cell.")
    threshold: float = Field(0.5, description="Multilabel: probability above which a label is predicted.")


class MultilabelTask(Task):
    name = "multilabel"
    options = MultilabelOptions
    config: MultilabelOptions
    auto_model = "AutoModelForSequenceClassification"
    default_metric = "f1_micro"
    metric_names = ("exact_match", "f1_micro", "f1_macro", "precision_micro", "recall_micro", "hamming_loss")
    stratify = False  # a row's labels are a set: no strata
    soft_targets = "sigmoid"
    problem_type = "multi_label_classification"
    read_logits = "[model.config.id2label[i] for i, p in enumerate(logits.sigmoid()[0]) if p > {threshold}]"

    @classmethod
    def infer_labels(cls, examples: list[Example], config: MultilabelOptions) -> list[str]:
        if config.labels:
            return list(config.labels)
        seen: set[str] = set()
        for ex in examples:
            seen.update(split_labels(ex.label, config.label_delimiter))
        return sort_labels(seen)

    def check_raw(self, raw: Any) -> list[str]:
        """A list of labels or a delimited text; every label in it must be one value."""
        if isinstance(raw, dict):
            raise ValueError(f"expected a list of labels or a {self.config.label_delimiter!r}-separated "
                             f"text, found an object {raw!r}")
        if isinstance(raw, (list, tuple, np.ndarray)):
            items = list(raw)
        else:
            items = split_labels(raw, self.config.label_delimiter)
        for item in items:
            problem = list_item_problem(item, self.config.labels)
            if problem:
                raise ValueError(problem)
        return [label_text(item) for item in items]

    def parse_label(self, raw: Any) -> np.ndarray:
        row = np.zeros(len(self.label_names), dtype=np.float32)
        for value in split_labels(raw, self.config.label_delimiter):
            row[check_known(value, self.label_to_id)] = 1.0
        return row

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        ids = tokenize_texts(tokenizer, [ex.text for ex in examples], max_length)
        labels = None if targets is None else np.stack(targets).astype(np.float32)
        return Encoded(input_ids=ids, labels=labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())

    def outputs(self, logits, batch) -> list[np.ndarray]:
        return list(torch.sigmoid(logits.float()).cpu().numpy())

    def metrics(self, outputs, targets) -> dict[str, Any]:
        predicted = (np.stack(outputs) >= self.config.threshold).astype(np.int64)
        return multilabel_metrics(np.stack(targets).astype(np.int64), predicted, self.label_names)

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        chosen = [
            {"label": name, "score": float(p)}
            for name, p in zip(self.label_names, output)
            if p >= self.config.threshold
        ]
        result: dict[str, Any] = {"labels": chosen}
        if all_scores:
            result["scores"] = {name: float(p) for name, p in zip(self.label_names, output)}
        return result

"""Single-label sequence classification: binary, multi-class, sentiment, topic."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from paretune.data.examples import Example
from paretune.evaluation.classification_metrics import classification_metrics
from paretune.data.encoded import Encoded
from paretune.tasks.base import Task, TaskOptions, check_known, label_text, sort_labels, tokenize_texts


class ClassificationOptions(TaskOptions):
    type: Literal["classification"] = "classification"


class ClassificationTask(Task):
    name = "classification"
    options = ClassificationOptions
    auto_model = "AutoModelForSequenceClassification"
    default_metric = "accuracy"
    metric_names = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_micro", "recall_micro",
                    "f1_micro", "precision_weighted", "recall_weighted", "f1_weighted", "support")
    min_labels = 2
    problem_type = "single_label_classification"
    read_logits = "model.config.id2label[logits.argmax(-1).item()]  # the predicted label"

    @classmethod
    def infer_labels(cls, examples: list[Example], config: TaskOptions) -> list[str]:
        if config.labels:
            return list(config.labels)
        return sort_labels({label_text(ex.label) for ex in examples})

    def parse_label(self, raw: Any) -> int:
        return check_known(label_text(raw), self.label_to_id)

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        ids = tokenize_texts(tokenizer, [ex.text for ex in examples], max_length)
        labels = None if targets is None else np.asarray(targets, dtype=np.int64)
        return Encoded(input_ids=ids, labels=labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)

    def outputs(self, logits, batch) -> list[np.ndarray]:
        return list(torch.softmax(logits.float(), dim=-1).cpu().numpy())

    def metrics(self, outputs, targets) -> dict[str, Any]:
        predicted = [int(np.argmax(p)) for p in outputs]
        return classification_metrics(list(targets), predicted, self.label_names)

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        best = int(np.argmax(output))
        result: dict[str, Any] = {"label": self.label_names[best], "score": float(output[best])}
        if all_scores:
            result["scores"] = {name: float(p) for name, p in zip(self.label_names, output)}
        return result

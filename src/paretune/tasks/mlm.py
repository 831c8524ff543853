"""Masked-language modelling on unlabelled text: domain-adaptive pretraining for encoders.

`task: {type: mlm}` trains the model's MLM head on the data's text column (no label column is
read) with the one training loop, cost meter and run folder; a fine-tune then starts from it with
`model.name_or_path: <that run>/model` (docs/pretraining.md). Masking follows BERT: `mask_rate` of
the non-special tokens are chosen; 80% become the mask token, 10% a random token, 10% stay.
Training batches draw new masks every time; evaluation masks are fixed per example (seeded by its
index) so validation loss and perplexity compare across evaluations and runs.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.data.collation import collate_text
from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.tasks.base import Task, TaskOptions, tokenize_texts

IGNORE = -100


class MlmOptions(TaskOptions):
    type: Literal["mlm"] = "mlm"
    mask_rate: float = Field(0.15, gt=0, lt=1, description="Share of tokens chosen for prediction.")


class MlmTask(Task):
    name = "mlm"
    options = MlmOptions
    auto_model = "AutoModelForMaskedLM"
    default_metric = "perplexity"
    metric_names = ("perplexity", "masked_accuracy")
    needs_labels: ClassVar[bool] = False
    stratify = False
    lower_is_better = frozenset({"loss", "perplexity"})
    read_logits = "logits  # per-token vocabulary scores"

    def __init__(self, config: TaskOptions, label_names: list[str]):
        super().__init__(config, label_names)
        self._train_rng = np.random.default_rng(0)

    @classmethod
    def infer_labels(cls, examples: list[Example], config: TaskOptions) -> list[str]:
        return []

    def check_raw(self, raw: Any) -> list[str]:
        return []  # any label column is ignored

    def parse_label(self, raw: Any) -> int:
        return 0

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        if tokenizer.mask_token_id is None:
            raise ValueError("task mlm needs a tokenizer with a mask token (an encoder such as BERT)")
        ids = tokenize_texts(tokenizer, [ex.text for ex in examples], max_length)
        # The mask id and vocabulary size travel with each example (the tokenization cache stores
        # arrays only, and collation has no tokenizer): two ints a row.
        info = [np.array([tokenizer.mask_token_id, len(tokenizer)], dtype=np.int64)] * len(ids)
        return Encoded(input_ids=ids, mlm_info=info,
                       labels=None if targets is None else np.zeros(len(ids), dtype=np.int64))

    def encoding_key(self) -> dict[str, Any]:
        # Masks are drawn at collation: the stored token ids do not depend on mask_rate.
        return {"task": self.name}

    def collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        batch = collate_text(encoded, indices, pad_id)
        ids = batch["input_ids"].numpy().copy()
        targets = np.full_like(ids, IGNORE)
        # The loop collates with gradients on; evaluation runs under no_grad: fixed masks there.
        training = torch.is_grad_enabled()
        mask_id, vocab = (int(v) for v in encoded.mlm_info[indices[0]])
        for row, index in enumerate(indices):
            rng = self._train_rng if training else np.random.default_rng(int(index))
            length = int(batch["attention_mask"][row].sum())
            self._mask_row(ids[row], targets[row], length, mask_id, vocab, rng)
        batch["input_ids"], batch["labels"] = torch.from_numpy(ids), torch.from_numpy(targets)
        return batch

    def _mask_row(self, ids: np.ndarray, targets: np.ndarray, length: int, mask_id: int, vocab: int, rng) -> None:
        candidates = list(range(1, length - 1))  # [CLS] and [SEP] at the ends are never masked
        if not candidates:
            return
        chosen = [i for i in candidates if rng.random() < self.config.mask_rate] or [int(rng.choice(candidates))]
        for i in chosen:
            targets[i] = ids[i]
            roll = rng.random()
            if roll < 0.8:
                ids[i] = mask_id
            elif roll < 0.9:
                ids[i] = int(rng.integers(vocab))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)

    def outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per example: [masked tokens predicted right, masked tokens, summed negative log-likelihood]."""
        labels = batch["labels"].to(logits.device)
        nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
        masked = labels != IGNORE
        right = (logits.argmax(-1) == labels) & masked
        return [np.array([float(r), float(m), float(n)]) for r, m, n in
                zip(right.sum(1).tolist(), masked.sum(1).tolist(), nll.sum(1).tolist())]

    def metrics(self, outputs: list[np.ndarray], targets: list[Any]) -> dict[str, Any]:
        right, masked, nll = np.sum(outputs, axis=0) if outputs else (0.0, 0.0, 0.0)
        masked = max(masked, 1.0)
        return {"perplexity": float(math.exp(min(nll / masked, 50.0))), "masked_accuracy": float(right / masked)}

    def readable(self, output: np.ndarray, example: Example, all_scores: bool = False) -> dict[str, Any]:
        return {"masked_accuracy": float(output[0] / max(output[1], 1.0))}

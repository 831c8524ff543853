"""Knowledge distillation as a model wrapper and a task wrapper for the one training loop.

The Trainer computes `task.loss(model(**inputs).logits, labels)` for every micro-batch, `inputs`
being the batch tensors the task names (`task.model_inputs`). Here
`model` is a `DistillationModel`: in training it runs the frozen teacher beside the student and
keeps both outputs for that batch; `task` is a `DistillationTask`, whose loss weighs the usual
task loss against the teacher's terms, which it takes from the model. In evaluation the wrapper
runs the student alone and the loss is the plain task loss, so validation metrics, the best-model
choice and early stopping are the student's own.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from paretune.data.batching import BatchPlan, make_loader
from paretune.distillation.options import DistillOptions
from paretune.distillation.student import layer_pairs
from paretune.methods.layers import transformer_blocks
from paretune.data.encoded import Encoded
from paretune.tasks.base import Task


def soft_loss(soft_targets: str, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None,
              temperature: float) -> torch.Tensor:
    """The student's loss against the teacher's outputs, averaged over real (unpadded) positions.

    `soft_targets` is the task's (`Task.soft_targets`): what its logits are."""
    student, teacher = student.float(), teacher.float()
    t = temperature
    if soft_targets == "value":  # a value, not a distribution: match it
        per_item = (student - teacher).pow(2).mean(-1)
    elif soft_targets == "sigmoid":  # independent sigmoids, softened like the softmax
        per_item = F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t),
                                                      reduction="none").mean(-1) * t * t
    else:  # softmax: KL(teacher || student) at temperature T, scaled by T^2
        per_item = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1),
                            reduction="none", log_target=True).sum(-1) * t * t
    if per_item.ndim == 2:  # token classification: one term per token, padding excluded
        weights = torch.ones_like(per_item) if mask is None else mask.to(per_item.dtype)
        return (per_item * weights).sum() / weights.sum().clamp_min(1)
    return per_item.mean()


class DistillationModel(torch.nn.Module):
    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, options: DistillOptions,
                 teacher_layers: list[int] | None = None):
        super().__init__()
        self.student, self.teacher, self.options = student, teacher.requires_grad_(False).eval(), options
        self.pairs = layer_pairs(len(transformer_blocks(student)), len(transformer_blocks(teacher)), teacher_layers)
        widths = (student.config.hidden_size, teacher.config.hidden_size)
        # A narrower student's hidden states are mapped to the teacher's width (TinyBERT's W_h);
        # the maps are trained with the student and dropped when it is saved.
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(*widths) for _ in self.pairs
        ) if options.hidden_weight > 0 and widths[0] != widths[1] else None
        self.pending: tuple[Any, Any, torch.Tensor] | None = None

    @property
    def config(self):
        return self.student.config

    def train(self, mode: bool = True) -> "DistillationModel":
        super().train(mode)
        self.teacher.eval()  # the teacher never trains: no dropout in its targets
        return self

    def forward(self, **inputs: torch.Tensor):
        """`inputs` are the task's model inputs; the attention mask, where there is one, says
        which positions are real."""
        hidden = self.options.hidden_weight > 0
        out = self.student(**inputs, output_hidden_states=hidden)
        if self.training:
            with torch.no_grad():
                target = self.teacher(**inputs, output_hidden_states=hidden)
            self.pending = (out, target, inputs.get("attention_mask"))
        return out

    def teacher_terms(self, soft_targets: str) -> torch.Tensor | None:
        """The weighted teacher terms of the batch just run forward (None outside training)."""
        if self.pending is None:
            return None
        out, target, mask = self.pending
        self.pending = None
        options = self.options
        total = options.soft_weight * soft_loss(soft_targets, out.logits, target.logits, mask, options.temperature)
        if options.hidden_weight > 0:
            total = total + options.hidden_weight * self._hidden_loss(out.hidden_states, target.hidden_states, mask)
        return total

    def _hidden_loss(self, student_states, teacher_states, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(student_states[0].shape[:2], device=student_states[0].device)
        weights = mask.unsqueeze(-1).float()
        losses = []
        for k, (s, t) in enumerate(self.pairs):
            state = student_states[s].float()
            if self.projections is not None:
                state = self.projections[k](state)
            squared = (state - teacher_states[t].float()).pow(2) * weights
            losses.append(squared.sum() / (weights.sum() * state.shape[-1]).clamp_min(1))
        return torch.stack(losses).mean()


class DistillationTask:
    """The run's task with a loss that adds the teacher's terms while training; all else delegates."""

    def __init__(self, task: Task, model: DistillationModel):
        self.task, self.model = task, model

    def __getattr__(self, name: str):
        return getattr(self.task, name)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hard = self.task.loss(logits, labels)
        terms = self.model.teacher_terms(self.task.soft_targets)
        if terms is None:  # evaluation: the student's own loss
            return hard
        return self.model.options.hard_weight * hard + terms


@torch.no_grad()
def kl_to_teacher(student: torch.nn.Module, teacher: torch.nn.Module, task: Task, encoded: Encoded,
                  pad_id: int, temperature: float = 1.0, batch_size: int = 64) -> float:
    """Mean soft loss of `student` against `teacher` on a data set (how far apart they predict)."""
    device = next(teacher.parameters()).device
    plan = BatchPlan(encoded.lengths(), batch_size=batch_size, shuffle=False, sort_by_length=True)
    total, rows = 0.0, 0
    student_mode, teacher_mode = student.training, teacher.training
    student.eval(), teacher.eval()
    for batch in make_loader(encoded, plan, pad_id, collate=task.collate):
        inputs = {k: batch[k].to(device) for k in task.model_inputs}
        loss = soft_loss(task.soft_targets, student(**inputs).logits, teacher(**inputs).logits,
                         inputs.get("attention_mask"), temperature)
        total += float(loss) * len(batch["index"])
        rows += len(batch["index"])
    student.train(student_mode), teacher.train(teacher_mode)
    return float(np.round(total / max(rows, 1), 6))

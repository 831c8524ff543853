"""L2-SP and EWC: a pull of each trainable weight toward its value in the old run.

L2-SP (Li et al., 2018) weighs every weight alike; EWC (Kirkpatrick et al., 2017) weighs each by
its diagonal Fisher information on the old task, so weights the old task relied on move least.
The Fisher is the mean squared gradient of the old model's loss on old training rows (the
"empirical" Fisher), scaled to mean 1 so `continual.ewc` and `continual.l2sp` read alike. Only
weights whose shape did not change are pulled (a head grown for new labels is free).
"""
from __future__ import annotations

import torch

from paretune.data.batching import BatchPlan, make_loader
from paretune.data.encoded import Encoded
from paretune.engine.evaluate import model_inputs
from paretune.tasks.base import Task


def anchor(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights as they are now (the old run's values)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def fisher_diagonal(model: torch.nn.Module, task: Task, encoded: Encoded, pad_id: int,
                    batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Mean squared gradient per trainable weight over `encoded`, scaled to mean 1."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout: the information of the weights as they are
    plan = BatchPlan(encoded.lengths(), batch_size=batch_size, shuffle=False, sort_by_length=True)
    batches = 0
    for batch in make_loader(encoded, plan, pad_id, collate=task.collate):
        model.zero_grad(set_to_none=True)
        loss = task.loss(model(**model_inputs(task, batch, device)).logits, batch["labels"].to(device))
        loss.backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2
        batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp(min=1e-20)
    return {name: f / mean for name, f in fisher.items()}


class Pull:
    """sum_i w_i (theta_i - theta_old_i)^2 * strength / 2 over the anchored weights."""

    def __init__(self, model: torch.nn.Module, old: dict[str, torch.Tensor], strength: float,
                 weights: dict[str, torch.Tensor] | None = None):
        self.pairs = [(p, old[name], None if weights is None else weights[name])
                      for name, p in model.named_parameters() if name in old and p.shape == old[name].shape]
        self.strength = strength

    def __call__(self) -> torch.Tensor:
        total = 0.0
        for p, old, weight in self.pairs:
            squared = (p - old.to(p.device)) ** 2
            total = total + (squared * weight.to(p.device)).sum() if weight is not None else total + squared.sum()
        return 0.5 * self.strength * total


class PulledTask:
    """The run's task whose training loss adds the pulls; evaluation loss is the task's own."""

    def __init__(self, task: Task, model: torch.nn.Module, pulls: list[Pull]):
        self.task, self.model, self.pulls = task, model, pulls

    def __getattr__(self, name: str):
        return getattr(self.task, name)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.task.loss(logits, labels)
        if not self.model.training:
            return loss
        return loss + sum(pull() for pull in self.pulls)

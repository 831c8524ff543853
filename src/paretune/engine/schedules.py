"""Learning-rate schedules with linear warmup, as multipliers of the peak rate.

Written as plain LambdaLR multipliers (rather than transformers' get_scheduler) because one
function covers all four shapes, exponential decay included, which transformers lacks, and a
LambdaLR's state is only its step count, so resume restores it exactly.
"""
from __future__ import annotations

import math

import torch

from paretune.config.schema import TrainingConfig


def warmup_steps(config: TrainingConfig, total_steps: int) -> int:
    if config.warmup_steps is not None:
        return min(config.warmup_steps, total_steps)
    return int(math.ceil(config.warmup_ratio * total_steps))


def lr_multiplier(step: int, *, kind: str, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    decay_steps = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / decay_steps)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "exponential":
        # Decays geometrically from 1 to min_ratio over the decay phase.
        return min_ratio**progress
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown scheduler {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int):
    warmup = warmup_steps(config, total_steps)

    def multiplier(step: int) -> float:
        return lr_multiplier(
            step, kind=config.scheduler, warmup=warmup, total=total_steps, min_ratio=config.min_lr_ratio
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)

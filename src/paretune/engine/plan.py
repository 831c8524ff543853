"""The training batch plan of a run, built once: the runner sizes the run from it (a method's
context needs the total steps) and the Trainer draws its batches from the same object."""
from __future__ import annotations

import math

from accelerate import Accelerator

from paretune.config.schema import TrainingConfig
from paretune.data.batching import DEFAULT_BATCH_SIZE, BatchPlan, resolve_batching
from paretune.data.encoded import Encoded
from paretune.tasks.base import Task


def train_plan(train: Encoded, config: TrainingConfig, accelerator: Accelerator, task: Task) -> BatchPlan:
    batch_size, batch_tokens = resolve_batching(config, train.n_tokens(), train.lengths().max(initial=1),
                                                task.auto_min_batch_tokens)
    if not task.batch_by_tokens and batch_tokens is not None:  # images: a fixed number per batch
        batch_size, batch_tokens = DEFAULT_BATCH_SIZE, None
    return BatchPlan(
        train.lengths(),
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        shuffle=True,
        seed=config.seed,
        num_replicas=accelerator.num_processes,
        rank=accelerator.process_index,
        # Only several processes, or a task whose loss is a mean over tokens across accumulated
        # micro-batches, weight a batch by its loss terms.
        loss_units=(task.loss_units(train) if accelerator.num_processes > 1 or task.weigh_accumulation_by_units
                    else None),
        packed=task.packed,
    )


def planned_steps(plan: BatchPlan, config: TrainingConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for this plan and config."""
    per_epoch = math.ceil(len(plan) / config.gradient_accumulation_steps)
    total = config.max_steps or max(1, math.ceil(per_epoch * config.epochs))
    return per_epoch, total

"""The one training loop, on Hugging Face accelerate.

Every method and task trains through `Trainer.fit`: batches come from the BatchPlan seam, the
task supplies the loss and metrics, and the loop owns accumulation, clipping, mixed precision,
non-finite-loss handling, periodic evaluation, best-model tracking, early stopping and
checkpoints. Gradient accumulation is done by hand (not `accelerator.accumulate`) so an epoch's
last, shorter group of micro-batches is averaged correctly and never leaks into the next epoch.
"""
from __future__ import annotations

import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from paretune.config.schema import TrainingConfig
from paretune.data.batching import BatchPlan, make_loader, resolve_batching
from paretune.engine.checkpoint import (
    LoopState,
    list_checkpoints,
    load_checkpoint,
    load_trainable_state,
    save_checkpoint,
    trainable_state,
)
from paretune.engine.optim import build_optimizer, default_lr
from paretune.engine.progress import Progress
from paretune.engine.schedules import build_scheduler
from paretune.errors import TrainingError
from paretune.tasks.base import Encoded, Task

# Test hook: SIGKILL ourselves right after this optimizer step (after its checkpoint, if any).
FAULT_ENV = "PARETUNE_FAULT_AT_STEP"
MODEL_INPUTS = ("input_ids", "attention_mask")


@dataclass
class EvalSet:
    encoded: Encoded
    targets: list[Any]


class Trainer:
    def __init__(
        self,
        *,
        model: torch.nn.Module,
        task: Task,
        config: TrainingConfig,
        train: Encoded,
        validation: EvalSet | None,
        pad_id: int,
        run_dir: Path,
        accelerator: Accelerator,
        on_eval: Callable[[dict], None] = lambda record: None,
        on_step: Callable[[torch.nn.Module, int], None] | None = None,
    ):
        self.task, self.config, self.train_set, self.validation = task, config, train, validation
        self.pad_id, self.run_dir, self.acc, self.on_eval = pad_id, run_dir, accelerator, on_eval
        self.on_step = on_step
        self.metric = config.metric or task.default_metric
        self.greater = task.greater_is_better(self.metric)
        self.plan = train_plan(train, config, accelerator)
        self.steps_per_epoch, self.total_steps = planned_steps(self.plan, config)
        examples_per_step = len(train) / max(len(self.plan), 1) * config.gradient_accumulation_steps
        self.lr = config.lr or default_lr(examples_per_step * accelerator.num_processes)
        optimizer = build_optimizer(model, config, self.lr, accelerator.device)
        self.scheduler = build_scheduler(optimizer, config, self.total_steps)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.state = LoopState()
        self.progress = Progress(self.total_steps, config.log_every, enabled=accelerator.is_main_process)

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def best_weights(self) -> Path:
        return self.checkpoints_dir / "best.safetensors"

    # --- the loop -----------------------------------------------------------------------
    def resume(self) -> LoopState:
        checkpoints = list_checkpoints(self.checkpoints_dir)
        if not checkpoints:
            raise TrainingError(f"{self.run_dir}: no checkpoint to resume from (none was written yet)")
        self.state = load_checkpoint(checkpoints[-1], self.unwrapped, self.optimizer, self.scheduler)
        return self.state

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.acc.unwrap_model(self.model)

    def fit(self) -> LoopState:
        state, cfg = self.state, self.config
        fault_step = int(os.environ.get(FAULT_ENV, "0") or 0)
        self.progress.start(state.step)
        started = time.perf_counter() - state.train_seconds
        while state.step < self.total_steps and not state.stopped_early:
            self.plan.set_epoch(state.epoch)
            for group in self._groups(state.batch_in_epoch):
                self._optimizer_step(group)
                state.train_seconds = time.perf_counter() - started
                epoch_done = state.batch_in_epoch >= len(self.plan)
                if epoch_done:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                last = state.step >= self.total_steps
                if self._due(cfg.eval_every, epoch_done) or (last and not self._evaluated_at_step()):
                    self._evaluate_and_track()
                if self._due(cfg.save_every, epoch_done) and not last:
                    self._checkpoint()
                if state.step == fault_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                if last or state.stopped_early or epoch_done:
                    break
        if not self._evaluated_at_step():
            self._evaluate_and_track()
        self.progress.close()
        state.train_seconds = time.perf_counter() - started
        state.finished = True
        if cfg.load_best and self.validation is not None and self.best_weights.is_file():
            load_trainable_state(self.unwrapped, self.best_weights)
        return state

    def _groups(self, start: int):
        """Yield lists of micro-batches, one list per optimizer step, from batch `start` on."""
        accum = self.config.gradient_accumulation_steps
        loader = make_loader(self.train_set, self.plan.tail(start), self.pad_id, self.acc.device.type == "cuda")
        group: list[dict] = []
        for batch in loader:
            group.append(batch)
            if len(group) == accum:
                yield group
                group = []
        if group:
            yield group

    def _due(self, every: int | str, epoch_done: bool) -> bool:
        return epoch_done if every == "epoch" else self.state.step % every == 0

    def _evaluated_at_step(self) -> bool:
        return self.validation is None or self.state.extra.get("last_eval_step") == self.state.step

    def _optimizer_step(self, group: list[dict]) -> None:
        state, acc = self.state, self.acc
        self.model.train()
        finite = True
        for i, batch in enumerate(group):
            state.batch_in_epoch += 1
            state.samples_seen += len(batch["index"]) * acc.num_processes
            state.tokens_seen += int(batch["attention_mask"].sum()) * acc.num_processes
            state.padded_tokens_seen += batch["input_ids"].numel() * acc.num_processes
            sync = i == len(group) - 1 or acc.num_processes == 1
            with nullcontext() if sync else acc.no_sync(self.model):
                loss = self._loss(batch)
                if not torch.isfinite(loss):
                    finite = False
                    break
                acc.backward(loss / len(group))
            self.progress.add_loss(loss.detach())
        if finite:
            if self.config.max_grad_norm:
                acc.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
            self.optimizer.step()
            state.extra["nan_streak"] = 0
            if self.on_step is not None:
                self.on_step(self.unwrapped, state.step + 1)
        else:
            self._count_nonfinite()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        self.progress.step(state, self.scheduler.get_last_lr()[0])

    def _count_nonfinite(self) -> None:
        state = self.state
        state.nan_steps += 1
        streak = state.extra.get("nan_streak", 0) + 1
        state.extra["nan_streak"] = streak
        self.progress.note(f"non-finite loss at step {state.step + 1}: step skipped ({state.nan_steps} so far)")
        if streak >= self.config.max_nan_steps:
            raise TrainingError(
                f"loss was NaN/inf for {streak} steps in a row (step {state.step + 1}); "
                "lower training.lr, set training.max_grad_norm, or check the labels "
                "(regression targets far from 0 can overflow)"
            )

    def _loss(self, batch: dict) -> torch.Tensor:
        device = self.acc.device
        inputs = {k: batch[k].to(device, non_blocking=True) for k in MODEL_INPUTS}
        labels = batch["labels"].to(device, non_blocking=True)
        with self.acc.autocast():
            logits = self.model(**inputs).logits
        return self.task.loss(logits, labels)

    # --- evaluation, best model, checkpoints ---------------------------------------------
    def _evaluate_and_track(self) -> None:
        state = self.state
        if self.validation is None:
            return
        started = time.perf_counter()
        metrics = evaluate(self.model, self.task, self.validation, self.config.eval_batch_size,
                           self.pad_id, self.acc)
        state.extra["eval_seconds"] = state.extra.get("eval_seconds", 0.0) + time.perf_counter() - started
        state.extra["last_eval_step"] = state.step
        if self.metric not in metrics or not isinstance(metrics[self.metric], (int, float)):
            available = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float)))
            raise TrainingError(f"training.metric '{self.metric}' is not a metric of this task ({available})")
        value = float(metrics[self.metric])
        improved = state.best_metric is None or (
            value > state.best_metric + self._min_delta() if self.greater else value < state.best_metric - self._min_delta()
        )
        if improved:
            state.best_metric, state.best_step, state.evals_since_best = value, state.step, 0
            if self.acc.is_main_process and self.config.load_best:
                self._save_best()
        else:
            state.evals_since_best += 1
        stop = self.config.early_stopping
        if stop is not None and state.evals_since_best >= stop.patience:
            state.stopped_early = True
        record = {
            "step": state.step,
            "epoch": round(state.epoch + state.batch_in_epoch / max(len(self.plan), 1), 4),
            "train_loss": self.progress.take_mean_loss(),
            "lr": self.scheduler.get_last_lr()[0],
            "validation": metrics,
            "best": improved,
        }
        self.progress.note(
            f"step {state.step}: validation {self.metric}={value:.4f} loss={metrics['loss']:.4f}"
            + (" (best)" if improved else "")
        )
        if self.acc.is_main_process:
            self.on_eval(record)

    def _min_delta(self) -> float:
        stop = self.config.early_stopping
        return stop.min_delta if stop is not None else 0.0

    def _save_best(self) -> None:
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.best_weights.with_suffix(f".tmp{os.getpid()}")
        save_file(trainable_state(self.unwrapped), str(tmp))
        os.replace(tmp, self.best_weights)

    def _checkpoint(self) -> None:
        if self.acc.is_main_process:
            save_checkpoint(self.checkpoints_dir, self.state, self.unwrapped, self.optimizer,
                            self.scheduler, self.config.keep_checkpoints)
        self.acc.wait_for_everyone()


def train_plan(train: Encoded, config: TrainingConfig, accelerator: Accelerator) -> BatchPlan:
    batch_size, batch_tokens = resolve_batching(config, train.n_tokens(), train.lengths().max(initial=1))
    return BatchPlan(
        train.lengths(),
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        shuffle=True,
        seed=config.seed,
        num_replicas=accelerator.num_processes,
        rank=accelerator.process_index,
    )


def planned_steps(plan: BatchPlan, config: TrainingConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for this plan and config."""
    per_epoch = math.ceil(len(plan) / config.gradient_accumulation_steps)
    total = config.max_steps or max(1, math.ceil(per_epoch * config.epochs))
    return per_epoch, total


@torch.no_grad()
def predict_outputs(model, task: Task, encoded: Encoded, batch_size: int, pad_id: int, device,
                    autocast=nullcontext, labels: bool = True) -> tuple[list[np.ndarray], float | None]:
    """Per-example task outputs in the original order (and mean loss when labels are present)."""
    was_training = model.training
    model.eval()
    plan = BatchPlan(encoded.lengths(), batch_size=batch_size, shuffle=False, sort_by_length=True)
    outputs: list[np.ndarray | None] = [None] * len(encoded)
    loss_sum, loss_count = 0.0, 0
    for batch in make_loader(encoded, plan, pad_id, device.type == "cuda"):
        inputs = {k: batch[k].to(device, non_blocking=True) for k in MODEL_INPUTS}
        with autocast():
            logits = model(**inputs).logits
        if labels and "labels" in batch:
            loss = task.loss(logits, batch["labels"].to(device))
            loss_sum += float(loss) * len(batch["index"])
            loss_count += len(batch["index"])
        for index, out in zip(batch["index"].tolist(), task.outputs(logits, batch)):
            outputs[index] = out
    model.train(was_training)
    return outputs, (loss_sum / loss_count if loss_count else None)


def evaluate(model, task: Task, data: EvalSet, batch_size: int, pad_id: int, accelerator) -> dict[str, Any]:
    outputs, loss = predict_outputs(model, task, data.encoded, batch_size, pad_id, accelerator.device,
                                    accelerator.autocast)
    metrics = task.metrics(outputs, data.targets)
    return {"loss": loss, **metrics}

"""The one training loop, on Hugging Face accelerate.

Every method and task trains through `Trainer.fit`: batches come from the BatchPlan seam (built
once by the runner, engine/plan.py), the task collates them, names the tensors that go into the
model and supplies the loss and metrics (engine/evaluate.py runs the evaluations), and the loop
owns accumulation, clipping, mixed precision, non-finite-loss handling, periodic evaluation,
best-model tracking, early stopping and checkpoints. Gradient accumulation is done by hand (not
`accelerator.accumulate`) so an epoch's last, shorter group of micro-batches is averaged correctly
and never leaks into the next epoch.

With several processes the same loop runs in each: every process takes its rows of each global
batch and weights its loss so the all-reduced gradient is the one-process gradient; evaluation
splits the batches and gathers the predictions, so every process sees the same metrics and takes
the same decisions (best model, early stopping). Only the main process writes files.
"""
from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors.torch import save_file

from paretune.config.schema import TrainingConfig
from paretune.data.batching import BatchPlan, make_loader
from paretune.data.encoded import Encoded, EvalSet
from paretune.engine.sharding import (
    load_optimizer_state,
    load_trainable_weights,
    optimizer_state,
    random_states,
    save_engine_state,
    sharding,
    trainable_weights,
)
from paretune.engine.activation_checkpointing import enable_gradient_checkpointing
from paretune.engine.chunked_loss import chunked_loss_for
from paretune.engine.compile import compile_for_training
from paretune.engine.checkpoint import (
    LoopState,
    check_world_size,
    list_checkpoints,
    read_loop_state,
    read_trainable_weights,
    save_checkpoint,
    staging_dir,
)
from paretune.engine.evaluate import evaluate, model_inputs
from paretune.engine.faults import fault_point
from paretune.engine.finite import DeferredFiniteCheck, use_deferred
from paretune.engine.optim import build_optimizer, default_lr
from paretune.engine.plan import planned_steps
from paretune.engine.progress import Progress
from paretune.engine.rng import seed_everything
from paretune.engine.schedules import build_scheduler
from paretune.errors import TrainingError
from paretune.tasks.base import Task


class Trainer:
    def __init__(
        self,
        *,
        model: torch.nn.Module,
        task: Task,
        config: TrainingConfig,
        train: Encoded,
        plan: BatchPlan,
        validation: EvalSet | None,
        pad_id: int,
        run_dir: Path,
        accelerator: Accelerator,
        on_eval: Callable[[dict], None] = lambda record: None,
        on_step: Callable[[torch.nn.Module, int], None] | None = None,
        extra_loss: Callable[[torch.nn.Module], torch.Tensor] | None = None,
        lr_scale: float = 1.0,
        score_answers: Callable[[torch.nn.Module], dict] | None = None,
    ):
        self.task, self.config, self.train_set, self.validation = task, config, train, validation
        self.pad_id, self.run_dir, self.acc, self.on_eval = pad_id, run_dir, accelerator, on_eval
        self.on_step, self.extra_loss = on_step, extra_loss
        # Generative runs with training.eval_generate: metrics of greedy answers at each evaluation.
        self.score_answers = score_answers
        self.metric = config.metric or task.default_metric
        self.greater = task.greater_is_better(self.metric)
        # Names before wrapping: files hold weights under the model's own names (FSDP renames).
        self.trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
        self.plan = plan  # the runner's (engine/plan.py): it sized the method's context too
        self.steps_per_epoch, self.total_steps = planned_steps(self.plan, config)
        # The plan's batches are global, the same on any number of processes: so is the lr.
        examples_per_step = len(train) / max(len(self.plan), 1) * config.gradient_accumulation_steps
        self.lr = config.lr or default_lr(examples_per_step) * lr_scale
        if config.gradient_checkpointing:  # before wrapping: transformers' own switch
            enable_gradient_checkpointing(model)
        optimizer = build_optimizer(model, config, self.lr, accelerator.device)
        self.scheduler = build_scheduler(optimizer, config, self.total_steps)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.sharding = sharding(accelerator)
        # Generative runs: the LM head and its loss a chunk of tokens at a time (engine/chunked_loss.py).
        self.chunked_loss = chunked_loss_for(self.unwrapped, task, config.chunked_loss, self.sharding)
        # training.compile (engine/compile.py): in place, so the weights keep their own names.
        self.compiled = compile_for_training(self.unwrapped, config.compile, accelerator.device.type,
                                             self.total_steps, self.sharding)
        # Non-finite steps skipped on the device, read back in batches (engine/finite.py), or
        # checked on the host before each backward.
        self.deferred = (DeferredFiniteCheck(self.optimizer, accelerator, config.log_every)
                         if use_deferred(config.finite_check, self.optimizer, accelerator) else None)
        if accelerator.process_index > 0:  # own dropout masks; process 0 keeps the one-process stream
            seed_everything(config.seed + accelerator.process_index)
        self.state = LoopState()
        self.last_validation: dict | None = None  # the newest evaluation's metrics
        self.progress = Progress(self.total_steps, config.log_every, enabled=accelerator.is_main_process)

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def best_weights(self) -> Path:
        return self.checkpoints_dir / "best.safetensors"

    # --- the loop -----------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return bool(list_checkpoints(self.checkpoints_dir))

    def resume(self) -> LoopState:
        checkpoints = list_checkpoints(self.checkpoints_dir)
        if not checkpoints:
            raise TrainingError(f"{self.run_dir}: no checkpoint to resume from (none was written yet)")
        path, acc = checkpoints[-1], self.acc
        check_world_size(path, acc.num_processes)
        weights = read_trainable_weights(path / "model.safetensors", self.trainable_names)
        load_trainable_weights(acc, self.model, weights)
        load_optimizer_state(acc, self.model, self.optimizer, path)
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        self.state = read_loop_state(path, acc.num_processes, acc.process_index)  # and the RNG
        losses = self.state.train_loss_sums  # absent in checkpoints before them
        if losses is not None:
            self.progress.restore_loss(*losses[acc.process_index])
        return self.state

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.acc.unwrap_model(self.model)

    def fit(self) -> LoopState:
        state, cfg = self.state, self.config
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
                fault_point("step", state.step)
                if last or state.stopped_early or epoch_done:
                    break
        if not self._evaluated_at_step():
            self._evaluate_and_track()
        self._settle_deferred()
        self.progress.close()
        state.train_seconds = time.perf_counter() - started
        state.finished = True
        if cfg.load_best and state.best_step is not None:
            self._load_best()
        return state

    def scored_final_weights(self) -> dict | None:
        """The last evaluation's metrics when they are those of the weights training ended with.

        They are when that evaluation was at the last step and the model kept those weights (no
        best weights loaded, or the best ones are these). Weights loaded from an earlier best step
        come without that step's buffers (batch-norm statistics), so those are scored again.
        """
        state = self.state
        if self.last_validation is None or state.last_eval_step != state.step:
            return None
        if self.config.load_best and state.best_step not in (None, state.step):
            return None
        return self.last_validation

    def _load_best(self) -> None:
        self.acc.wait_for_everyone()  # the main process may still be writing them
        if not self.best_weights.is_file():  # every process reads the file the main one wrote
            raise TrainingError(f"{self.best_weights} is not visible to process {self.acc.process_index}: "
                                "on several machines, output.dir must be on a filesystem they share")
        best = read_trainable_weights(self.best_weights, self.trainable_names)
        load_trainable_weights(self.acc, self.model, best)

    def _groups(self, start: int):
        """Yield lists of micro-batches, one list per optimizer step, from batch `start` on."""
        accum = self.config.gradient_accumulation_steps
        loader = make_loader(self.train_set, self.plan.tail(start), self.pad_id, self.acc.device.type == "cuda",
                             self.task.train_collate, workers=self.task.loader_workers)
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
        return self.validation is None or self.state.last_eval_step == self.state.step

    def _optimizer_step(self, group: list[dict]) -> None:
        state, acc = self.state, self.acc
        self.model.train()
        finite, losses = True, []
        scales = self._accumulation_scales(state.batch_in_epoch, len(group))
        for i, batch in enumerate(group):
            share = self.plan.share(state.batch_in_epoch)  # counts of the whole global batch
            state.batch_in_epoch += 1
            state.samples_seen += share.rows
            state.tokens_seen += share.tokens
            state.padded_tokens_seen += share.padded_tokens
            with self._gradient_sync(i == len(group) - 1):
                loss = self._loss(batch, share.loss_weight)
                if self.deferred is not None:
                    logged = self.deferred.observe(loss)
                elif not self._finite_everywhere(loss):
                    finite = False
                    break
                else:
                    logged = loss.detach()
                acc.backward(loss * scales[i])
            self.progress.add_loss(logged)
            losses.append(logged)
        if finite:
            if self.config.max_grad_norm:
                acc.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
            if self.deferred is not None:
                self.deferred.arm()  # the fused step leaves everything as it was on a bad loss
            self.optimizer.step()
            state.nan_streak = 0 if self.deferred is None else state.nan_streak
            if self.on_step is not None:
                # This step's loss stays on the device: a hook that logs it reads it in batches.
                self.step_loss = torch.stack(losses).mean()
                self.on_step(self.unwrapped, state.step + 1)
        else:
            self._count_nonfinite(state.step + 1)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        if self.deferred is not None and self.deferred.finish_step(state.step):
            self._settle_deferred()
        self.progress.step(state, self.scheduler.get_last_lr()[0])

    def _settle_deferred(self) -> None:
        """Count the steps the device skipped since the last read (one sync for all of them)."""
        for step, skipped in self.deferred.resolve() if self.deferred is not None else []:
            if skipped:
                self._count_nonfinite(step)
            else:
                self.state.nan_streak = 0

    def _accumulation_scales(self, first: int, n: int) -> list[float]:
        """Each micro-batch's share of the step's loss: equal, or by its loss terms when the task's
        loss is a mean over tokens (so the step's loss is that mean over all its tokens)."""
        if not self.task.weigh_accumulation_by_units or n == 1:
            return [1.0 / n] * n
        units = [self.plan.share(first + j).units for j in range(n)]
        total = sum(units)
        return [u / total for u in units] if total else [1.0 / n] * n

    def _gradient_sync(self, last: bool):
        """Average gradients across processes once per optimizer step, on its last micro-batch."""
        if self.sharding == "deepspeed":
            # DeepSpeed all-reduces and steps inside backward, at the boundary accelerate reports.
            self.acc.gradient_state._set_sync_gradients(last)
            return nullcontext()
        return nullcontext() if last or self.acc.num_processes == 1 else self.acc.no_sync(self.model)

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).reshape(1).float()
        if self.acc.num_processes > 1:
            # All processes skip the step together, or the others would wait forever in backward.
            finite = self.acc.gather(finite).min()
        return bool(finite)

    def _count_nonfinite(self, step: int) -> None:
        state = self.state
        state.nan_steps += 1
        state.nan_streak += 1
        streak = state.nan_streak
        self.progress.note(f"non-finite loss at step {step}: step skipped ({state.nan_steps} so far)")
        if streak >= self.config.max_nan_steps:
            raise TrainingError(
                f"loss was NaN/inf for {streak} steps in a row (step {step}); "
                "lower training.lr, set training.max_grad_norm, or check the labels "
                "(regression targets far from 0 can overflow)"
            )

    def _loss(self, batch: dict, weight: float = 1.0) -> torch.Tensor:
        """This process's part of the batch loss, scaled so that its mean over processes (what the
        gradient all-reduce takes) is the loss of the whole global batch: `weight` is this
        process's fraction of the batch's loss terms (rows, or labelled tokens)."""
        inputs = model_inputs(self.task, batch, self.acc.device)
        labels = batch["labels"].to(self.acc.device, non_blocking=True)
        chunked = self.chunked_loss is not None and self.chunked_loss.wanted(labels)
        with self.acc.autocast(), self.chunked_loss.hidden_states() if chunked else nullcontext():
            logits = self.task.forward(self.model, inputs)  # chunked: the hidden states the head reads
        if weight == 0:  # a stand-in row: the global batch had fewer rows than processes
            return self.chunked_loss.zero(logits) if chunked else logits.float().sum() * 0.0
        loss = self.chunked_loss(logits, labels, self.acc.autocast) if chunked else self.task.loss(logits, labels)
        if self.extra_loss is not None:  # a method's regularizer, e.g. AdaLoRA's orthogonality
            loss = loss + self.extra_loss(self.unwrapped)
        return loss * (weight * self.acc.num_processes)

    # --- evaluation, best model, checkpoints ---------------------------------------------
    def _evaluate_and_track(self) -> None:
        state = self.state
        self._settle_deferred()  # skipped steps are known before the scores they led to
        if self.validation is None:
            return
        # Training time so far, without evaluation: what "time to reach a metric" is measured in.
        train_s = state.train_seconds - state.eval_seconds
        started = time.perf_counter()
        metrics = evaluate(self.model, self.task, self.validation, self.config.eval_batch_size,
                           self.pad_id, self.acc)
        if self.score_answers is not None:
            metrics.update(self.score_answers(self.unwrapped))
        state.eval_seconds += time.perf_counter() - started
        state.last_eval_step = state.step
        self.last_validation = metrics
        if self.metric not in metrics or not isinstance(metrics[self.metric], (int, float)):
            available = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float)))
            raise TrainingError(f"training.metric '{self.metric}' is not a metric of this task ({available})")
        value = float(metrics[self.metric])
        improved = state.best_metric is None or (
            value > state.best_metric + self._min_delta() if self.greater else value < state.best_metric - self._min_delta()
        )
        if improved:
            state.best_metric, state.best_step, state.evals_since_best = value, state.step, 0
            if self.config.load_best:
                self._save_best()
        else:
            state.evals_since_best += 1
        stop = self.config.early_stopping
        if stop is not None and state.evals_since_best >= stop.patience:
            state.stopped_early = True
        record = {
            "step": state.step,
            "epoch": round(state.epoch + state.batch_in_epoch / max(len(self.plan), 1), 4),
            "train_loss": self._mean_over_processes(self.progress.take_mean_loss()),
            "lr": self.scheduler.get_last_lr()[0],
            "train_s": round(train_s, 3),
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

    def _mean_over_processes(self, value: float | None) -> float | None:
        if value is None or self.acc.num_processes == 1:
            return value
        return float(self.acc.reduce(torch.tensor([value], device=self.acc.device), "mean"))

    def _save_best(self) -> None:
        weights = trainable_weights(self.acc, self.model, self.trainable_names)  # every process
        if not self.acc.is_main_process:
            return
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.best_weights.with_suffix(f".tmp{os.getpid()}")
        save_file(weights, str(tmp))
        os.replace(tmp, self.best_weights)

    def _checkpoint(self) -> None:
        acc = self.acc
        self._settle_deferred()  # the saved counts are the true ones
        staging = staging_dir(self.checkpoints_dir, self.state.step)
        if acc.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while writing
            staging.mkdir(parents=True)
        acc.wait_for_everyone()
        save_engine_state(acc, self.model, staging)  # DeepSpeed: each process writes its part
        # Gathered on every process (collectives under sharding), written by the main one.
        weights = trainable_weights(acc, self.model, self.trainable_names)
        optimizer = optimizer_state(acc, self.model, self.optimizer)
        rng = random_states(acc)
        # Each process's training loss summed since the last evaluation, so the first train_loss
        # logged after a resume is the one an uninterrupted run logs.
        losses = self.progress.loss_state()
        self.state.train_loss_sums = gather_object([losses]) if acc.num_processes > 1 else [losses]
        if acc.is_main_process:
            save_checkpoint(self.checkpoints_dir, self.state, weights, optimizer, self.scheduler, rng,
                            keep=self.config.keep_checkpoints)
        acc.wait_for_everyone()


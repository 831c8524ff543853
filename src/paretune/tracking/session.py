"""What a training run reports while it runs: its plan (cost/plan.py) and its tracked metrics.

The runner builds one `RunHooks` per run and hands its `on_step` and `on_eval` to the Trainer,
so neither needs the loop to change. Every optimizer step's training loss and learning rate are
logged. The loss stays on the device (`Trainer.step_loss`): the steps are buffered and read in
one go every `tracking.flush_every` steps (default training.log_every), at each evaluation and at
the end, so a GPU run pays one device sync per flush, not one per step. Each evaluation record
also logs the mean training loss since the previous evaluation (`train/mean_loss`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from paretune.config import Config
from paretune.cost.plan import Measured, StepTimer, current_rss_mib, estimate_here, workload
from paretune.tracking import check_tracking, open_trackers
from paretune.tracking.base import Tracker, numbers

log = logging.getLogger("paretune")


class RunHooks:
    def __init__(self, config: Config, run_dir: Path, meter, method, *, main_process: bool,
                 append_metrics: Callable[[dict], None]):
        self.config, self.meter, self.method = config, meter, method
        self.append_metrics = append_metrics
        self.timer = StepTimer()
        self.trainer = None
        self._plan_input: tuple | None = None
        self._steps: list[tuple[int, Any, float]] = []  # (step, loss on the device, lr) not yet sent
        self.flush_every = config.tracking.flush_every or config.training.log_every
        check_tracking(config.tracking, run_dir)  # a missing package or folder fails before training
        self.trackers: list[Tracker] = open_trackers(config.tracking, run_dir) if main_process else []
        for tracker in self.trackers:
            tracker.params(config.model_dump(mode="json"))

    def start(self, trainer, data) -> None:
        """Called once the Trainer is built: what the plan needs that costs nothing to read."""
        self.trainer = self.timer.trainer = trainer
        evals = [s.encoded.lengths() for s in (data.validation, data.test) if s is not None]
        self._plan_input = (workload(trainer, trainer.unwrapped, self.config.method.name, evals),
                            current_rss_mib(), self.meter.elapsed_s())

    def on_step(self, model, step: int) -> None:
        if self.method.on_step is not None:
            self.method.on_step(model, step)
        self.timer.on_step(model, step)
        if self.trackers and self.trainer is not None:
            loss = getattr(self.trainer, "step_loss", None)
            self._steps.append((step, loss, self.trainer.scheduler.get_last_lr()[0]))
            if step % self.flush_every == 0:
                self._flush_steps()

    def _flush_steps(self) -> None:
        """Send the buffered steps: their losses are read from the device together (one sync)."""
        import torch

        steps, self._steps = self._steps, []
        known = [loss.detach().float().reshape(()) for _, loss, _ in steps if loss is not None]
        values = iter(torch.stack(known).cpu().tolist() if known else [])
        for step, loss, lr in steps:
            self._log({"train/lr": lr, **({} if loss is None else {"train/loss": next(values)})}, step)

    def on_eval(self, record: dict[str, Any]) -> None:
        self.append_metrics(record)
        self._flush_steps()  # in step order, before the evaluation's own values
        values = numbers({k: v for k, v in record.items() if k not in ("step", "best", "lr")})  # lr: logged per step
        self._log({_tag(name): value for name, value in values.items()}, record["step"])

    def plan(self) -> dict | None:
        """This run's plan from the FLOP-free part of the model (its batch plan and parameters) and
        its own first timed steps: what `paretune plan` would have said, beside what it took."""
        spt = self.timer.seconds_per_token()
        if self._plan_input is None or spt is None:
            return None
        work, rss, setup_s = self._plan_input
        price = self.meter.price.usd_per_hour if self.meter.price else None
        row = estimate_here(work, Measured(self.meter.device, spt, rss, setup_s), price)
        row["basis"] = f"first {len(self.timer.marks) - 1} timed steps of this run"
        return row

    def finish(self, run_dir: Path, metrics: dict, cost: dict) -> None:
        self._flush_steps()
        final = numbers({k: metrics[k] for k in ("validation", "test") if k in metrics})
        self._log({f"final/{k}": v for k, v in final.items()}, metrics.get("steps", 0))
        self._log(numbers({k: v for k, v in cost.items() if k not in ("price",)}, "cost/"), metrics.get("steps", 0))
        for name in ("README.md", "cost.json", "metrics.json"):
            if (run_dir / name).is_file():
                for tracker in self.trackers:
                    tracker.artifact(run_dir / name)
        self.close()

    def close(self, failed: bool = False) -> None:
        try:
            self._flush_steps()
        except Exception as err:  # tracking must never fail a run
            log.warning("tracking: logging the last steps failed: %s", err)
        for tracker in self.trackers:
            try:
                tracker.close(failed)
            except Exception as err:  # tracking must never fail a finished run
                log.warning("tracking: closing %s failed: %s", type(tracker).__name__, err)
        self.trackers = []

    def _log(self, values: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.metrics(values, step)


def _tag(name: str) -> str:
    """Evaluation record keys as tags: validation/accuracy, train/mean_loss, train/seconds."""
    return {"train_loss": "train/mean_loss", "train_s": "train/seconds", "epoch": "train/epoch"}.get(name, name)

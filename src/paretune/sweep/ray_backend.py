"""The Ray backend: each variant is a Ray Tune trial, on a local Ray or an existing cluster.

    paretune sweep examples/sweep.yaml --backend ray                  # local Ray, all cores
    paretune sweep sweep.yaml --backend ray --address auto            # the cluster this node is in

Tune only schedules: a trial runs the same job as the local backend (train, resume or read a
finished variant) and reports its outcome; the driver records it in sweep.json as each trial
ends. Resuming is the sweep folder's business, not Tune's: a rerun claims only unfinished
variants and starts fresh Tune trials for them, which pick up their run folders' checkpoints.
On a cluster the sweep folder must be on storage every node mounts at the same path (NFS, a
shared volume), because trials write their run folders there; paretune must be installed on
every node.
"""
from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import datetime
from typing import Any, Callable

from paretune.errors import ParetuneError
from paretune.sweep.local import OnDone
from paretune.sweep.spec import RayOptions, Sweep

try:
    from ray.tune import Callback as TuneCallback
except ImportError:  # the executor says how to install Ray when it is used
    TuneCallback = object

log = logging.getLogger("paretune")
ALL_AT_ONCE = 1_000_000  # fixed variants: hand Tune every one, it schedules by resources


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ParetuneError("--backend ray needs Ray Tune: pip install 'paretune[ray]'") from None
    return ray, tune


class RayExecutor:
    name = "ray"
    batch_size = ALL_AT_ONCE

    def __init__(self, sweep: Sweep, options: RayOptions):
        self.ray, self.tune = _import_ray()
        self.sweep, self.options = sweep, options
        self.started_ray = False

    def _connect(self) -> None:
        """Start (or join) Ray only when there is work: a rerun with nothing left starts nothing."""
        if self.ray.is_initialized():
            return
        settings: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.options.address:
            self.ray.init(address=self.options.address, **settings)
        else:
            self.ray.init(num_cpus=self.options.num_cpus, **settings)
        self.started_ray = True

    @property
    def search_batch_size(self) -> int:
        """Trials that fit at once: the search asks Optuna for this many per round."""
        if self.options.max_concurrent:
            return self.options.max_concurrent
        self._connect()
        resources = self.ray.cluster_resources()
        slots = resources.get("CPU", 1) // self.options.cpus_per_trial
        if self.options.gpus_per_trial:
            slots = min(slots, resources.get("GPU", 0) // self.options.gpus_per_trial)
        if slots < 1:
            raise ParetuneError(f"the Ray cluster has {resources.get('CPU', 0)} CPUs and {resources.get('GPU', 0)} "
                                f"GPUs, too few for one trial ({self.options.cpus_per_trial} CPUs, "
                                f"{self.options.gpus_per_trial} GPUs): lower ray.cpus_per_trial / gpus_per_trial")
        return int(slots)

    def run(self, jobs: list[dict[str, Any]], on_done: OnDone) -> None:
        self._connect()
        tune = self.tune
        by_name = {job["name"]: job for job in jobs}
        reported: set[str] = set()

        def report(name: str, outcome: dict[str, Any]) -> None:
            if name in by_name and name not in reported:
                reported.add(name)
                on_done(by_name[name], outcome)

        resources = {"cpu": self.options.cpus_per_trial, "gpu": self.options.gpus_per_trial}
        trainable = tune.with_resources(tune.with_parameters(_trial, jobs=by_name), resources)
        recorder = Recorder(report)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        tuner = tune.Tuner(
            trainable,
            param_space={"variant": tune.grid_search(list(by_name))},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=self.options.max_concurrent,
                reuse_actors=True,  # a worker that has imported torch and paretune takes the next trial
                trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=f"{self.sweep.name}-{stamp}",
                storage_path=str((self.sweep.folder / "ray").resolve()),
                failure_config=tune.FailureConfig(max_failures=0),  # a failed variant is recorded, not retried
                callbacks=[recorder],
                verbose=1,
            ),
        )
        try:
            results = tuner.fit()
        finally:
            recorder.close()
        for result in results:  # trials that died without reporting (worker lost, import error)
            name = (result.config or {}).get("variant")
            if name and name not in reported and result.error is not None:
                report(name, {"status": "failed", "action": "ray", "error": f"Ray trial failed: {result.error}"})
        unfinished = [name for name in by_name if name not in reported]
        if unfinished:  # stopped (Ctrl-C) rather than failed: left claimed, so the next run resumes them
            log.warning("Ray stopped before these variants finished; rerun the sweep to resume them: %s",
                        ", ".join(unfinished))

    def close(self) -> None:
        if self.started_ray:
            self.ray.shutdown()


def _trial(config: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> None:
    """Runs on a Ray worker: the variant's job, its outcome reported back to the driver."""
    from ray import tune

    from paretune.logs import setup_logging
    from paretune.sweep.job import run_job

    setup_logging()
    outcome = run_job(jobs[config["variant"]])
    value = outcome.get("value")
    tune.report({"outcome": json.dumps(outcome, default=str),
                 "value": float(value) if isinstance(value, (int, float)) else math.nan})


def _trial_name(trial) -> str:
    return str(trial.config["variant"])


# Tune pickles its callbacks with the experiment state, so the recorder is a module-level class
# (pickled by name) holding only a key to the driver's report function (which holds the sweep's
# file lock and cannot be pickled), looked up here on the driver.
_REPORTERS: dict[str, Callable[[str, dict[str, Any]], None]] = {}


class Recorder(TuneCallback):
    """Records each trial in sweep.json as it ends, on the driver, not after the whole batch."""

    def __init__(self, report: Callable[[str, dict[str, Any]], None]):
        self.key = uuid.uuid4().hex
        _REPORTERS[self.key] = report

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "outcome" in result and self.key in _REPORTERS:
            _REPORTERS[self.key](trial.config["variant"], json.loads(result["outcome"]))

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.key in _REPORTERS:
            error = f"Ray trial failed: {trial.get_error()}"
            _REPORTERS[self.key](trial.config["variant"], {"status": "failed", "action": "ray", "error": error})

    def close(self) -> None:
        _REPORTERS.pop(self.key, None)

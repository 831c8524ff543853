"""One variant's work, wherever it runs (this process or a Ray worker): train, resume or bench.

A job is a plain JSON-able dict so a Ray worker on another machine receives it unchanged:

    {"name", "run_dir", "config" (the validated config as a dict), "fresh", "metric", "cwd",
     "bench_inference" (None, or keyword arguments of paretune.cost.inference.bench_inference)}

A finished run folder (metrics.json present) is never trained again: the job only reads its
metrics (and benchmarks it when asked and not yet done).

It never raises for a variant's own failure: the outcome says `failed` with the error, so one
bad variant is recorded and the sweep goes on. Interrupts (Ctrl-C, SIGKILL) do stop it; the
variant's claim then goes stale and the next run resumes it from its newest checkpoint.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from paretune.errors import ParetuneError

log = logging.getLogger("paretune")

TRACEBACK_LINES = 25


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    run_dir = Path(job["run_dir"])
    if job.get("cwd") and Path(job["cwd"]).is_dir():
        os.chdir(job["cwd"])  # Ray starts trials in their own folder; relative paths mean the sweep's
    started = time.perf_counter()
    action = _action(run_dir, job.get("fresh", False))
    outcome: dict[str, Any] = {"action": action}
    try:
        if action != "done":
            log.info("variant %s: %s -> %s", job["name"], action, run_dir)
            _train(job, action)
        outcome.update(status="finished", **finished_metrics(run_dir, job.get("metric")))
    except Exception as err:  # a variant's failure, of any kind, is its own: record it, go on
        outcome.update(status="failed", error=f"{type(err).__name__}: {err}")
        if not isinstance(err, ParetuneError):  # a bug, not bad input: keep where it happened
            outcome["traceback"] = "".join(traceback.format_exc().splitlines(True)[-TRACEBACK_LINES:])
    finally:
        _release_memory()
    if outcome["status"] == "finished" and job.get("bench_inference") is not None:
        # The variant's model is the one the user's own sweep file named: its trust setting holds here.
        trust = bool((job.get("config") or {}).get("model", {}).get("trust_remote_code"))
        outcome["bench_inference"] = bench(run_dir, {**job["bench_inference"], "trust_remote_code": trust})
    outcome["seconds"] = round(time.perf_counter() - started, 2)
    return outcome


def _action(run_dir: Path, fresh: bool) -> str:
    if (run_dir / "metrics.json").is_file():
        return "done"
    if fresh:
        return "train"
    checkpoints = run_dir / "checkpoints"
    if (run_dir / "config.yaml").is_file() and checkpoints.is_dir() and any(checkpoints.glob("step-*")):
        return "resume"
    return "train"


def _train(job: dict[str, Any], action: str) -> None:
    from paretune.config import config_from_dict
    from paretune.runner import finetune, resume

    if action == "resume":
        resume(job["run_dir"])
        return
    # A variant that starts over replaces whatever a crashed or failed attempt left behind.
    raw = {**job["config"], "output": {**job["config"].get("output", {}), "overwrite": True}}
    finetune(config_from_dict(raw, f"variant {job['name']}"))


def finished_metrics(run_dir: Path, metric: str | None) -> dict[str, Any]:
    """The variant's main metric from its metrics.json (the one the search optimises)."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    name = metric or metrics.get("metric")
    value = (metrics.get("validation") or {}).get(name)
    return {"metric": name, "value": value if isinstance(value, (int, float)) else None}


def bench(run_dir: Path, options: dict[str, Any]) -> str:
    """Measure serving cost (inference.json); a failure here leaves the trained variant finished."""
    if (run_dir / "inference.json").is_file():
        return "done"
    try:
        from paretune.cost.inference import bench_inference
    except ImportError as err:
        return f"failed: inference benchmark unavailable ({err})"
    try:
        bench_inference(run_dir, progress=False, **options)
    except Exception as err:
        log.warning("variant %s: inference benchmark failed: %s", run_dir.name, err)
        return f"failed: {type(err).__name__}: {err}"
    finally:
        _release_memory()
    return "done"


def _release_memory() -> None:
    # Variants run one after another in one process: give back the last model's memory first.
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass

"""Experiment tracking: one module per backend, registered here by one line.

A run logs to every backend in `tracking.backends` (or `--track`): the config as parameters,
each evaluation's metrics with the training loss and learning rate, the learning rate per
step, the cost figures and plan, and the model card as an artifact (docs/tracking.md).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from paretune.config.schema import TrackingConfig
from paretune.errors import ConfigError
from paretune.tracking import mlflow, tensorboard, wandb
from paretune.tracking.base import Backend, Tracker, Where

BACKENDS: dict[str, Backend] = {b.name: b for b in (tensorboard.BACKEND, mlflow.BACKEND, wandb.BACKEND)}


def check_backends(names: list[str]) -> list[Backend]:
    """The backends asked for, or one error naming every one that is unknown or not installed."""
    problems, found = [], []
    for name in names:
        backend = BACKENDS.get(name)
        if backend is None:
            problems.append(f"unknown tracking backend '{name}' (known: {', '.join(BACKENDS)})")
        elif importlib.util.find_spec(backend.module) is None:
            problems.append(f"tracking backend {name} needs the {backend.module} package: {backend.install}")
        else:
            found.append(backend)
    if problems:
        raise ConfigError("; ".join(problems))
    return found


def where(config: TrackingConfig, run_dir: Path) -> Where:
    """Files go to tracking.dir, else beside the run folder (a sweep's variants: in the sweep's)."""
    folder = Path(config.dir) if config.dir else run_dir.resolve().parent
    run_name = config.run_name or run_dir.name.removesuffix(".staging")
    return Where(folder, config.experiment or config.group or "paretune", run_name, config.group,
                 config.mlflow_uri)


def open_trackers(config: TrackingConfig, run_dir: Path) -> list[Tracker]:
    place = where(config, run_dir)
    return [backend.open(place) for backend in check_backends(config.backends)]

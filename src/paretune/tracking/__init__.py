"""Experiment tracking: one module per backend, registered here by one line.

A run logs to every backend in `tracking.backends` (or `--track`): the config as parameters,
each evaluation's metrics with the training loss and learning rate, the learning rate per
step, the cost figures and plan, and the model card as an artifact (docs/tracking.md).
"""
from __future__ import annotations

import importlib.util
import os
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


def check_tracking(config: TrackingConfig, run_dir: Path) -> None:
    """Every backend installed and the tracking folder writable, or one clear error: called before
    the run folder is made, so a bad tracking.dir leaves nothing behind that blocks the rerun."""
    if not check_backends(config.backends):
        return
    folder = where(config, run_dir).dir
    probe = folder / f".paretune-write-test{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"tracking folder {folder} cannot be written ({err.strerror}): set tracking.dir to a "
                          "folder you can write, or leave tracking.backends empty") from None


def open_trackers(config: TrackingConfig, run_dir: Path) -> list[Tracker]:
    check_tracking(config, run_dir)
    place = where(config, run_dir)
    trackers = []
    for backend in check_backends(config.backends):
        try:
            trackers.append(backend.open(place))
        except OSError as err:  # a folder the probe could write, but not the backend's own files
            for opened in trackers:
                opened.close(failed=True)
            raise ConfigError(f"tracking backend {backend.name} cannot write under {place.dir} ({err.strerror}: "
                              f"{err.filename}): set tracking.dir to a folder you can write") from None
    return trackers

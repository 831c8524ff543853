"""What every experiment-tracking backend provides: one tracked run, written to as training goes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol


class Tracker(Protocol):
    def params(self, params: dict[str, Any]) -> None: ...
    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def artifact(self, path: Path) -> None: ...
    def close(self, failed: bool = False) -> None: ...


@dataclass(frozen=True)
class Where:
    """Where and under which names a run is tracked (resolved from the tracking: section)."""

    dir: Path  # local files: TensorBoard events, the MLflow SQLite store, W&B offline runs
    experiment: str  # MLflow experiment, W&B project
    run_name: str
    group: str | None  # a sweep's name: MLflow tag and experiment, TB sub-folder, W&B group
    mlflow_uri: str | None


@dataclass(frozen=True)
class Backend:
    name: str
    module: str  # the Python package it needs: checked before training starts
    open: Callable[[Where], Tracker]
    install: str


def leaves(values: dict[str, Any], separator: str, prefix: str = ""):
    """(joined key, value) for every non-dict leaf of a nested dict."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from leaves(value, separator, f"{name}{separator}")
        else:
            yield name, value


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"training": {"lr": 1e-3}} -> {"training.lr": 1e-3}; lists as text (params are flat)."""
    return {name: value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
            for name, value in leaves(values, ".", prefix)}


def numbers(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested dict, flattened with `/` (TensorBoard's tag grouping)."""
    return {name: float(value) for name, value in leaves(values, "/", prefix)
            if isinstance(value, (int, float)) and not isinstance(value, bool)}

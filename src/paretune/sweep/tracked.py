"""A sweep's tracking: every variant is its own tracked run in the sweep's group (MLflow: the
sweep's experiment, tagged `paretune.sweep`; TensorBoard: `DIR/tensorboard/<sweep>/<variant>`;
W&B: the run group), and the sweep's frontier is logged as one more run named `frontier`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from paretune.config.schema import TrackingConfig

log = logging.getLogger("paretune")


def grouped(config: dict[str, Any], sweep_name: str, variant: str, track: list[str]) -> dict[str, Any]:
    """A variant's config dict with `--track` backends added and the sweep as its group."""
    tracking = dict(config.get("tracking") or {})
    tracking["backends"] = list(dict.fromkeys([*tracking.get("backends", []), *track]))
    if not tracking["backends"]:
        return config
    tracking["group"] = tracking.get("group") or sweep_name
    tracking["run_name"] = variant
    return {**config, "tracking": tracking}


def log_frontier(folder: Path, tracking: dict[str, Any], runs_dir: Path) -> None:
    """The sweep's frontier (table, picture, JSON) as the artifacts of a run named `frontier`."""
    from paretune.frontier.report import build, write
    from paretune.tracking import open_trackers
    from paretune.tracking.base import numbers

    config = TrackingConfig.model_validate({**tracking, "run_name": "frontier"})
    try:
        frontier = build([folder])
    except Exception as err:  # no finished variant, no metric: nothing to draw, the sweep stands
        log.warning("tracking: no frontier to log (%s)", err)
        return
    files = write(frontier, folder)
    for tracker in open_trackers(config, runs_dir / "frontier"):
        for index, point in enumerate(frontier.points):
            values = numbers({"quality": point.quality, "train_usd": point.train_usd, "run_s": point.run_s})
            tracker.metrics({f"frontier/{k}": v for k, v in values.items()}, index)  # a curve, best first
            # And under each variant's name, with its Pareto marks, to read without the artifacts.
            marks = {k: float(bool(point.extra.get(k))) for k in ("pareto_train", "pareto_serve")}
            tracker.metrics({f"frontier/{point.name}/{k}": v for k, v in {**values, **marks}.items()}, 0)
        for path in files.values():
            if path is not None and Path(path).is_file():
                tracker.artifact(Path(path))
        tracker.close()

"""The finished runs an ensemble or a soup is made of: opened, checked to combine, and scored.

Members combine only when they solve the same task with the same labels in the same order;
anything else is refused naming the runs that differ. The validation rows that weights, a
stacking meta-model or a greedy soup are fitted on are the first member's (as its config reads
them) unless the user names another file (`fit_on`); each member predicts them through its own
tokenizer and model, in any stored form.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from paretune.config.schema import Config
from paretune.data.prepare import CheckedData, check_data, encode_cached
from paretune.engine.evaluate import predict_outputs
from paretune.errors import ParetuneError
from paretune.predictor import Predictor
from paretune.run_folder import TASK_FILE, RunFolder
from paretune.tasks.base import Task


@dataclass
class Member:
    path: Path
    config: Config
    info: dict[str, Any]  # model/paretune.json
    metrics: dict[str, Any]
    cost: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    def quality(self, metric: str) -> float | None:
        value = (self.metrics.get("validation") or {}).get(metric)
        return float(value) if isinstance(value, (int, float)) else None


def open_members(run_dirs: list[str | Path], at_least: int = 2) -> list[Member]:
    """Every run, finished and loadable, all on one task with one label list; else one clear error."""
    if len(run_dirs) < at_least:
        raise ParetuneError(f"give at least {at_least} finished runs to combine (got {len(run_dirs)})")
    members = []
    for run_dir in run_dirs:
        run = RunFolder.open(run_dir)
        if not run.is_finished() or not (run.model_dir / TASK_FILE).is_file():
            raise ParetuneError(f"{run_dir} has not finished (no metrics.json or model/): only finished runs combine")
        cost = run.read_json("cost.json") if (run.path / "cost.json").is_file() else {}
        members.append(Member(run.path, run.read_config(), json.loads((run.model_dir / TASK_FILE).read_text()),
                              run.read_json("metrics.json"), cost))
    check_combinable(members)
    return members


def fit_on(members: list[Member], validation: str | Path | None) -> list[Member]:
    """The members, with the first one's config reading `validation` as its validation file (the
    rows weights, stacking and a greedy soup are fitted on, and what the combined run records as
    its validation split). None keeps the first member's own validation rows."""
    if validation is None:
        return members
    path = Path(validation).expanduser()
    if not path.is_file():
        raise ParetuneError(f"--validation {validation}: no such file")
    first = members[0]
    data = first.config.data.model_copy(update={"validation": str(path.resolve())})
    return [replace(first, config=first.config.model_copy(update={"data": data}))] + members[1:]


def check_combinable(members: list[Member]) -> None:
    first = members[0]
    for other in members[1:]:
        if other.config.task.type != first.config.task.type:
            raise ParetuneError(f"{first.path} is a {first.config.task.type} run and {other.path} a "
                                f"{other.config.task.type} run: only runs of one task combine")
        if other.info.get("labels") != first.info.get("labels"):
            raise ParetuneError(f"{first.path} predicts labels {first.info.get('labels')} and {other.path} "
                                f"{other.info.get('labels')}: only runs with the same labels, in the same "
                                "order, combine")
        if _task_options(other) != _task_options(first):
            raise ParetuneError(f"{first.path} and {other.path} have different task options "
                                f"({_task_options(first)} vs {_task_options(other)}): their outputs do not combine")
    if len({m.path.resolve() for m in members}) < len(members):
        raise ParetuneError("a run is listed twice: give each member once")


def _task_options(member: Member) -> dict:
    return {k: v for k, v in member.config.task.model_dump(mode="json").items() if k != "labels"}


def member_metric(members: list[Member]) -> str:
    return members[0].metrics.get("metric") or members[0].config.training.metric or "accuracy"


@dataclass
class Split:
    """Rows the members are scored on (read once, as the first member's config reads them)."""

    task: Task
    examples: list
    targets: list


def read_splits(member: Member) -> tuple[Split, Split | None]:
    """(validation, test or None) of the first member's data."""
    checked: CheckedData = check_data(member.config)
    validation = Split(checked.task, checked.validation, checked.validation_targets)
    test = Split(checked.task, checked.test, checked.test_targets) if checked.test else None
    return validation, test


# (member model/ folder, its weights' mtime, the split's texts) -> outputs: making several
# ensembles of the same runs in one process (a sweep, a benchmark) predicts each split once.
_OUTPUTS: dict[tuple, list[np.ndarray]] = {}


def member_outputs(predictor: Predictor, split: Split, batch_size: int = 128, cache: bool = True) -> list[np.ndarray]:
    """One member's per-example task outputs (class probabilities for classification) on a split.
    `cache=False` for a model changed in memory (a soup being mixed)."""
    model_dir = predictor.run_dir / "model"
    key = (str(model_dir.resolve()), max((p.stat().st_mtime for p in model_dir.iterdir()), default=0),
           hash(tuple(str(ex.text) for ex in split.examples)))
    if cache and key in _OUTPUTS:
        return _OUTPUTS[key]
    encoded, _ = encode_cached(predictor.task, split.examples, split.targets, predictor.tokenizer,
                               predictor.max_length, None)
    outputs, _ = predict_outputs(predictor.model, predictor.task, encoded, batch_size, predictor.pad_id,
                                 predictor.device)
    if cache:
        _OUTPUTS[key] = outputs
    return outputs


def load_predictors(members: list[Member], trust_remote_code: bool = False) -> list[Predictor]:
    return [Predictor.load(m.path, device="cpu", trust_remote_code=trust_remote_code) for m in members]


def summed_cost(members: list[Member], own_s: float) -> dict[str, Any]:
    """cost.json of a combined run: the members' training paid for, plus its own combining step
    priced at the first member's price per hour."""
    price = members[0].cost.get("price") or {}
    usd_per_hour = price.get("usd_per_hour")
    member_usd = [m.cost.get("usd") for m in members]
    own_usd = own_s / 3600 * usd_per_hour if isinstance(usd_per_hour, (int, float)) else None
    known = all(isinstance(u, (int, float)) for u in member_usd) and own_usd is not None
    wall = sum(float(m.cost.get("wall_s") or 0) for m in members) + own_s
    return {
        "device": members[0].cost.get("device"),
        "device_name": members[0].cost.get("device_name"),
        "phases_s": {"members_s": round(wall - own_s, 3), "combine_s": round(own_s, 3)},
        "wall_s": round(wall, 3),
        "device_hours": float(f"{wall / 3600:.4g}"),
        "price": price or None,
        "usd": float(f"{sum(member_usd) + own_usd:.4g}") if known else None,
        "members_usd": member_usd,
        "combine_usd": None if own_usd is None else float(f"{own_usd:.4g}"),
    }


def summed_inference(members: list[Member]) -> dict[str, Any] | None:
    """An estimate of serving cost before `paretune bench-infer` measures it: every member runs
    on every request, so latencies and dollars add up. None unless every member was measured."""
    found = []
    for member in members:
        path = member.path / "inference.json"
        if not path.is_file():
            return None
        found.append(json.loads(path.read_text()))
    usd = [f.get("usd_per_million") for f in found]
    p50 = [(f.get("latency_ms") or {}).get("p50") for f in found]
    rates = [f.get("throughput_per_s") for f in found]
    estimate: dict[str, Any] = {"estimated_from_members": True,
                                "size_mib": sum(f.get("size_mib") or 0 for f in found)}
    if all(isinstance(u, (int, float)) for u in usd):
        estimate["usd_per_million"] = sum(usd)
    if all(isinstance(p, (int, float)) for p in p50):
        estimate["latency_ms"] = {"p50": sum(p50)}
    if all(isinstance(r, (int, float)) and r > 0 for r in rates):
        estimate["throughput_per_s"] = 1 / sum(1 / r for r in rates)
    return estimate


def relative_to(target: Path, start: Path) -> str:
    """`target` as a path from `start` (so a folder of runs can move as a whole)."""
    import os

    return os.path.relpath(Path(target).resolve(), Path(start).resolve())


class Clock:
    def __init__(self):
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.started

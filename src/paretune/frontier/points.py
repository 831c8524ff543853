"""Read what the frontier compares from run folders: quality, training cost, serving cost.

Every figure comes from files a run already wrote (metrics.json, cost.json, inference.json,
data.json), so a sweep folder, a folder of runs, or single runs from `paretune train` and
`paretune compress` all join the same table. A missing file leaves a blank, never a guess.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paretune.errors import ParetuneError


@dataclass
class Price:
    """A price the user gave (`--price`): it replaces each run's own for train and serve dollars."""

    name: str
    usd_per_hour: float


@dataclass
class Point:
    name: str
    run_dir: Path
    status: str  # finished, failed, running, unfinished
    error: str | None = None
    method: str | None = None
    quality: float | None = None
    train_usd: float | None = None
    run_s: float | None = None  # wall time of the whole run, what train_usd pays for
    scaled_s: float | None = None  # the part that grows with training rows (data prep + train)
    train_price: str | None = None
    device: str | None = None
    train_rows: int | None = None
    serve_usd_per_million: float | None = None
    latency_p50_ms: float | None = None
    throughput_per_s: float | None = None
    # A generative run's serving is also counted in generated tokens (bench-infer's "generation"):
    # answers differ in length between runs, tokens do not.
    tokens_per_s: float | None = None  # batched
    time_to_first_token_ms: float | None = None
    serve_usd_per_million_tokens: float | None = None
    size_mib: float | None = None
    trainable_percent: float | None = None
    metric: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # projections, filled later

    @property
    def finished(self) -> bool:
        return self.status == "finished" and self.quality is not None


def collect(paths: list[Path], metric: str | None = None, split: str = "validation",
            price: Price | None = None) -> tuple[list[Point], str]:
    """Points for every run under `paths`, and the metric they are ranked by (one for all)."""
    groups = collect_groups(paths, metric, split, price, by_task=False)
    if len(groups) > 1:
        listed = "; ".join(f"{g.metric}: {', '.join(p.run_dir.name for p in g.points if p.status == 'finished')}"
                           for g in groups)
        raise ParetuneError(f"the runs rank by different metrics ({listed}): choose one with --metric")
    return groups[0].points, groups[0].metric


@dataclass
class Group:
    """Runs ranked by the same metric (and, for the command, of the same task type)."""

    task: str | None
    metric: str
    points: list[Point]


def collect_groups(paths: list[Path], metric: str | None = None, split: str = "validation",
                   price: Price | None = None, by_task: bool = True) -> list[Group]:
    """The runs under `paths` in groups that can be ranked together: one group when `metric` is
    given, else one per task type and ranking metric (a sentiment run's accuracy and a chat
    run's exact match are no common scale). Unfinished runs join the first group."""
    found: list[tuple[str, Path, dict]] = []
    groups: list[str] = []  # the folder each run was found through, to tell equal names apart
    for path in paths:
        runs = _runs_in(Path(path))
        found += runs
        groups += [_group(Path(path)) for _ in runs]
    if not found:
        raise ParetuneError(f"no run folders found in {', '.join(map(str, paths))}")
    names = _unique_names([name for name, _, _ in found], groups)
    keys = [_rank_key(run_dir, metric, split, by_task) for _, run_dir, _ in found]
    order = list(dict.fromkeys(key for key in keys if key is not None))
    if not order:
        raise ParetuneError("none of the runs has finished (no metrics.json): nothing to compare yet")
    result = []
    for key in order:
        members = [i for i, own in enumerate(keys) if own == key or (own is None and key == order[0])]
        points = [_point(names[i], found[i][1], found[i][2], key[1], split, price) for i in members]
        result.append(Group(task=key[0], metric=key[1], points=points))
    return result


# Scores of generated answers, in the order they rank a generative run: the task's structured
# match when it has one, else exact match. Perplexity, the loss generation trains on, says how
# likely the reference answers were, not whether the model gives them (an int8 chat model kept
# a perplexity of 4.4 while its exact match fell from 0.98 to 0.38).
ANSWER_METRICS = ("structured_match", "exact_match")


def ranking_metric(metrics: dict, split: str = "validation") -> str | None:
    """The metric a run ranks by: its own (metrics.json "metric"), except that a run ranked by a
    language-model loss (perplexity; a preference run's loss) whose answers were scored ranks by
    its answer score: what its users care about, and comparable with its SFT parent."""
    chosen = metrics.get("metric")
    if chosen not in ("perplexity", "loss"):
        return chosen
    scores = metrics.get(split) or {}
    return next((m for m in ANSWER_METRICS if isinstance(scores.get(m), (int, float))), chosen)


def _rank_key(run_dir: Path, metric: str | None, split: str, by_task: bool) -> tuple[str | None, str] | None:
    metrics = _read(run_dir / "metrics.json")
    if not metrics:
        return None
    own = metric or ranking_metric(metrics, split)
    if not own:
        return None
    task = ((_read_yaml(run_dir / "config.yaml") or {}).get("task") or {}).get("type") if by_task else None
    return (None if metric else task, own)


def _runs_in(path: Path) -> list[tuple[str, Path, dict]]:
    """(name, run folder, sweep record) for a sweep folder, a run folder, or a folder of runs."""
    if not path.is_dir():
        raise ParetuneError(f"{path} does not exist or is not a folder")
    if (path / "sweep.json").is_file() or ((path / "runs").is_dir() and not (path / "config.yaml").is_file()):
        from paretune.sweep.state import read_state

        records = read_state(path).get("variants", {})
        runs = [(name, path / record.get("run_dir", f"runs/{name}"), record) for name, record in records.items()]
        listed = {run_dir.resolve() for _, run_dir, _ in runs}
        extra = sorted(p for p in (path / "runs").glob("*/") if (p / "config.yaml").is_file()
                       and p.resolve() not in listed) if (path / "runs").is_dir() else []
        return runs + [(p.name, p, {}) for p in extra]
    if (path / "config.yaml").is_file():
        return [(path.name, path, {})]
    children = sorted(p for p in path.iterdir() if (p / "config.yaml").is_file())
    if not children:
        raise ParetuneError(f"{path} is not a sweep folder, a run folder, or a folder of run folders")
    return [(p.name, p, {}) for p in children]


def _group(path: Path) -> str:
    path = path.resolve()
    return path.parent.name if (path / "config.yaml").is_file() else path.name


def _unique_names(names: list[str], groups: list[str]) -> list[str]:
    # Two sweeps may both have a "lora": name such points by their sweep (or folder) too.
    return [f"{group}/{name}" if names.count(name) > 1 else name for name, group in zip(names, groups)]


def _point(name: str, run_dir: Path, record: dict, metric: str, split: str, price: Price | None) -> Point:
    metrics = _read(run_dir / "metrics.json")
    status = "finished" if metrics else record.get("status") or "unfinished"
    if status == "finished" and not metrics:
        status = "unfinished"  # the record says finished but the folder was removed or moved
    point = Point(name=name, run_dir=run_dir, status=status, error=record.get("error"), metric=metric)
    config = _read_yaml(run_dir / "config.yaml")
    point.method = ((config or {}).get("method") or {}).get("name")
    if metrics:
        value = (metrics.get(split) or {}).get(metric)
        point.quality = float(value) if isinstance(value, (int, float)) else None
        if point.quality is None:
            point.error = f"no {split} {metric} in metrics.json"
        point.trainable_percent = metrics.get("trainable_percent")
        compression = (metrics.get("compression") or {}).get("method")
        if compression:  # a compressed form keeps its parent's config: name both steps
            point.method = f"{point.method}+{compression}" if point.method else compression
    point.train_rows = (_read(run_dir / "data.json") or {}).get("train_rows")
    _add_training_cost(point, _read(run_dir / "cost.json"), price)
    _add_serving_cost(point, _read(run_dir / "inference.json"), price)
    if point.size_mib is None and (run_dir / "model").is_dir():
        point.size_mib = sum(folder_mib(d) for d in _model_folders(run_dir / "model"))
    return point


def _add_training_cost(point: Point, cost: dict | None, price: Price | None) -> None:
    if not cost:
        return
    point.run_s = cost.get("wall_s")
    phases = cost.get("phases_s") or {}
    grows = [phases[k] for k in ("data_prep_s", "train_s") if isinstance(phases.get(k), (int, float))]
    point.scaled_s = sum(grows) if grows else point.run_s
    point.device = cost.get("device_name") or cost.get("device")
    if price is not None and isinstance(cost.get("device_hours"), (int, float)):
        point.train_usd = cost["device_hours"] * price.usd_per_hour
        point.train_price = price.name
    elif isinstance(cost.get("usd"), (int, float)):
        point.train_usd = cost["usd"]
        point.train_price = (cost.get("price") or {}).get("name")


def _add_serving_cost(point: Point, inference: dict | None, price: Price | None) -> None:
    if not inference:
        return
    point.latency_p50_ms = (inference.get("latency_ms") or {}).get("p50")
    point.throughput_per_s = inference.get("throughput_per_s")
    point.size_mib = inference.get("size_mib")
    point.serve_usd_per_million = _usd_per_million(price, point.throughput_per_s, inference.get("usd_per_million"),
                                                   point.serve_usd_per_million)
    generation = inference.get("generation") or {}
    point.tokens_per_s = generation.get("tokens_per_s_batched")
    point.time_to_first_token_ms = generation.get("time_to_first_token_ms")
    point.serve_usd_per_million_tokens = _usd_per_million(
        price, point.tokens_per_s, generation.get("usd_per_million_generated_tokens"), point.serve_usd_per_million_tokens)


def _usd_per_million(price: Price | None, per_s, recorded, current):
    """Dollars per million answers (or tokens) at `price` from the measured rate; without a price,
    the figure the bench recorded; otherwise what the point already held."""
    if price is not None and per_s:
        return price.usd_per_hour / 3600 / per_s * 1e6
    return recorded if isinstance(recorded, (int, float)) else current


def _model_folders(model_dir: Path) -> list[Path]:
    """model/ and, for an ensemble, its members' model folders (they are served too)."""
    from paretune.stored import model_folders

    try:
        return model_folders(model_dir)
    except ParetuneError:  # a member moved away: the folder alone, never a failed frontier
        return [model_dir]


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # a file being written right now by a running variant: treat as absent


def _read_yaml(path: Path) -> dict | None:
    import yaml

    if not path.is_file():
        return None
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    return loaded if isinstance(loaded, dict) else None

"""The frontier of a set of runs: points, Pareto marks, answers and notes; written as .md/.png/.json."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paretune.errors import ParetuneError
from paretune.frontier import plot, projection
from paretune.frontier.pareto import COST_TIE_TOLERANCE, pareto_optimal
from paretune.frontier.points import Group, Point, Price, collect, collect_groups
from paretune.frontier.projection import Scale, train_cost
from paretune.frontier.recommend import NO_BENCH, NO_PRICE, Answer, Questions, answer
from paretune.frontier.table import markdown, rows, sort_points

log = logging.getLogger("paretune")


@dataclass
class Frontier:
    title: str
    points: list[Point]
    metric: str
    split: str
    greater: bool
    scale: Scale
    answers: list[Answer]
    price: Price | None = None
    notes: list[str] = field(default_factory=list)
    min_metric: float | None = None  # --min-metric, drawn as a line on the picture
    group: str | None = None  # "task: metric" when the runs given fell into several groups

    def optimal(self, flag: str) -> list[str]:
        return [p.name for p in self.points if p.extra.get(flag)]


def build(paths: list[Path], *, metric: str | None = None, split: str = "validation", price: str | None = None,
          questions: Questions | None = None, scale: Scale | None = None,
          bench_missing: bool = False) -> Frontier:
    """One frontier over every run under `paths`; they must rank by one metric (or give `metric`)."""
    chosen_price = resolve_price_option(price)
    points, metric = collect(paths, metric, split, chosen_price)
    if bench_missing and _bench(points):
        points, metric = collect(paths, metric, split, chosen_price)
    return _frontier(points, metric, split, _title(paths), questions, scale, chosen_price)


def build_groups(paths: list[Path], *, metric: str | None = None, split: str = "validation",
                 price: str | None = None, questions: Questions | None = None, scale: Scale | None = None,
                 bench_missing: bool = False) -> list[Frontier]:
    """One frontier per group of runs that rank alike (points.collect_groups): a sentiment run and
    a chat run in one folder give two tables, each with its own metric, never one mixed ranking."""
    chosen_price = resolve_price_option(price)
    groups = collect_groups(paths, metric, split, chosen_price)
    if bench_missing and _bench([p for g in groups for p in g.points]):
        groups = collect_groups(paths, metric, split, chosen_price)
    title = _title(paths)
    return [_frontier(g.points, g.metric, split, title if len(groups) == 1 else f"{title} ({_group_name(g)})",
                      questions, scale, chosen_price, group=_group_name(g) if len(groups) > 1 else None)
            for g in groups]


def _group_name(group: Group) -> str:
    return f"{group.task}: {group.metric}" if group.task else group.metric


def _title(paths: list[Path]) -> str:
    return " + ".join(dict.fromkeys(Path(p).resolve().name for p in paths))


def _frontier(points: list[Point], metric: str, split: str, title: str, questions: Questions | None,
              scale: Scale | None, price: Price | None, group: str | None = None) -> Frontier:
    from paretune.tasks.base import Task

    questions, scale = questions or Questions(), scale or Scale()
    greater = metric not in Task.lower_is_better
    projection.apply(points, scale)
    mark_pareto(points, greater, scale)
    frontier = Frontier(title, sort_points(points, greater), metric, split, greater, scale,
                        answer(points, questions, scale, greater), price, min_metric=questions.min_metric,
                        group=group)
    frontier.notes = _notes(frontier)
    return frontier


def mark_pareto(points: list[Point], greater: bool, scale: Scale) -> None:
    finished = [p for p in points if p.finished]
    for flag, cost in (("pareto_train", lambda p: train_cost(p, scale)),
                       ("pareto_serve", lambda p: p.serve_usd_per_million)):
        marks = pareto_optimal([(p.quality, cost(p)) for p in finished], maximize=(greater, False),
                               rel_tol=(0.0, COST_TIE_TOLERANCE))  # costs are timings: see pareto.py
        for point, optimal in zip(finished, marks):
            point.extra[flag] = optimal


def resolve_price_option(text: str | None) -> Price | None:
    """`--price` is a price-table name or dollars per device-hour; it replaces the runs' own."""
    if text is None:
        return None
    from paretune.cost.prices import find_price, load_table, parse_price_option

    value = parse_price_option(text)
    if isinstance(value, float):
        return Price(f"${value:g}/h (--price)", value)
    row = find_price(load_table(), value)
    return Price(f"{row.name} (${row.usd_per_hour:g}/h)", row.usd_per_hour)


def _bench(points: list[Point]) -> bool:
    missing = [p for p in points if p.finished and not (p.run_dir / "inference.json").is_file()]
    if not missing:
        return False
    try:
        from paretune.cost.inference import bench_inference
    except ImportError as err:
        raise ParetuneError(f"--bench-missing needs the inference benchmark, which is not available ({err})") from None
    for n, point in enumerate(missing, 1):
        log.info("[%d/%d] benchmarking inference of %s", n, len(missing), point.name)
        try:
            bench_inference(point.run_dir)
        except ParetuneError as err:
            log.error("%s: inference benchmark failed: %s", point.name, err)
    return True


def _notes(frontier: Frontier) -> list[str]:
    finished = [p for p in frontier.points if p.finished]
    notes = []
    if frontier.price is not None:
        notes.append(f"all dollars at {frontier.price.name}, not the runs' own prices")
    else:
        used = sorted({p.train_price for p in finished if p.train_price})
        if used:
            notes.append(f"training dollars at each run's own price: {', '.join(used)}")
    unpriced = [p.name for p in finished if p.train_usd is None]
    if unpriced:
        notes.append("training dollars missing: " + NO_PRICE.format(names=", ".join(unpriced)))
    unbenched = [p.name for p in finished if p.latency_p50_ms is None and p.serve_usd_per_million is None]
    if unbenched:
        notes.append("serving figures missing: " + NO_BENCH.format(names=", ".join(unbenched)))
    devices = sorted({p.device for p in finished if p.device})
    if len(devices) > 1:
        notes.append(f"runs were measured on different devices ({'; '.join(devices)}): times compare devices too")
    if frontier.scale.train_rows is not None:
        notes.append("projected training scales data preparation and training time by rows / sample rows at the "
                     "same epochs and device; evaluation and setup stay as measured (docs/sweeps.md)")
    not_done = [f"{p.name} ({p.status})" for p in frontier.points if not p.finished]
    if not_done:
        notes.append(f"not on the frontier: {', '.join(not_done)}")
    return notes


def to_markdown(frontier: Frontier, image: str | None = "frontier.png") -> str:
    header, body = rows(frontier.points, frontier.scale)
    lines = [f"# Frontier: {frontier.title}", "",
             f"{frontier.metric} ({'higher' if frontier.greater else 'lower'} is better) on the {frontier.split} split. "
             "pareto: T = Pareto-optimal for quality vs training dollars"
             + (" (projected)" if frontier.scale.train_rows is not None else "")
             + ", S = vs serving dollars per million predictions; p50 latency at batch 1. Costs within "
             f"{COST_TIE_TOLERANCE:.0%} of each other count as equal (timing noise).", ""]
    if frontier.scale.any:
        lines += [f"Projected to {frontier.scale.describe()}.", ""]
    by_train = ", ".join(frontier.optimal("pareto_train")) or "none (no training dollars)"
    by_serve = ", ".join(frontier.optimal("pareto_serve")) or "none (no inference.json)"
    lines += [markdown(header, body), "", "## Pareto-optimal", "", f"- quality vs training $: {by_train}",
              f"- quality vs serving $/1M: {by_serve}", "", "## Answers", ""]
    lines += [f"- **{a.question}**: {a.answer}" for a in frontier.answers]
    if frontier.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in frontier.notes]
    if image:
        lines += ["", f"![frontier]({image})"]
    return "\n".join(lines) + "\n"


def to_json(frontier: Frontier) -> dict[str, Any]:
    points = []
    for p in frontier.points:
        entry = {k: v for k, v in asdict(p).items() if k != "extra"}
        entry["run_dir"] = str(p.run_dir)
        points.append({**entry, **p.extra})
    return {"title": frontier.title, "group": frontier.group, "metric": frontier.metric, "split": frontier.split,
            "greater_is_better": frontier.greater, "min_metric": frontier.min_metric,
            "cost_tie_tolerance": COST_TIE_TOLERANCE,
            "scale": asdict(frontier.scale), "price": asdict(frontier.price) if frontier.price else None,
            "points": points, "answers": [asdict(a) for a in frontier.answers], "notes": frontier.notes}


def write(frontier: Frontier, folder: Path) -> dict[str, Path]:
    """frontier.md/.png/.json in `folder`; a group's files are named after it (frontier-TASK-METRIC.*)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = "frontier" + (f"-{re.sub(r'[^A-Za-z0-9]+', '-', frontier.group).strip('-')}" if frontier.group else "")
    at_scale = frontier.scale.train_rows is not None
    train_label = (f"training $ at {frontier.scale.train_rows:,.0f} rows (projected)" if at_scale
                   else "training $") + (f" at {frontier.price.name}" if frontier.price else "")
    png = plot.draw(frontier.points, folder / f"{stem}.png", greater=frontier.greater,
                    train_cost=lambda p: train_cost(p, frontier.scale), train_label=train_label,
                    title=f"{frontier.title}: {frontier.metric} vs cost", threshold=frontier.min_metric)
    md = folder / f"{stem}.md"
    md.write_text(to_markdown(frontier, image=png.name), encoding="utf-8")
    js = folder / f"{stem}.json"
    js.write_text(json.dumps(to_json(frontier), indent=2, default=str) + "\n", encoding="utf-8")
    return {"md": md, "png": png, "json": js}

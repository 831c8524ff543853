"""The frontier page: `paretune frontier`'s points, Pareto marks and answers (frontier/report.py),
drawn as SVG scatter plots whose points link to their runs.

SVG made here rather than by the charting library: a few hundred points at most, each an <a>
that opens its run and a <title> that names it, which works without script and is what the
browser tests click.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from markupsafe import Markup, escape

from paretune.errors import ParetuneError
from paretune.frontier.pareto import staircase
from paretune.frontier.projection import train_cost
from paretune.frontier.recommend import Questions
from paretune.ui.catalog import RunInfo

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD = 640, 360, 64, 44, 16


@dataclass
class ChartPoint:
    x: float
    y: float
    label: str
    href: str
    run_id: str
    optimal: bool


def frontier_context(runs: list[RunInfo], questions: Questions, metric: str | None, split: str) -> dict[str, Any]:
    from paretune.frontier.report import build_groups

    if not runs:
        return {"groups": [], "problem": "no run folders found"}
    try:
        # Each run folder by itself: the folders given may mix sweeps and runs at any depth.
        frontiers = build_groups([run.path for run in runs], metric=metric, split=split, questions=questions)
    except ParetuneError as err:
        return {"groups": [], "problem": str(err)}
    by_folder = {run.path.resolve(): run for run in runs}
    groups = []
    for frontier in frontiers:
        ids = {p.name: by_folder[p.run_dir.resolve()].id for p in frontier.points if p.run_dir.resolve() in by_folder}
        finished = [p for p in frontier.points if p.finished]
        charts = []
        for title, cost, flag in (("training $", lambda p: train_cost(p, frontier.scale), "pareto_train"),
                                  ("serving $ per million predictions", lambda p: p.serve_usd_per_million,
                                   "pareto_serve")):
            points = [ChartPoint(cost(p), p.quality, f"{p.name}: {frontier.metric} {p.quality:.4f}, "
                                 f"{title} {_money(cost(p))}", f"/run/{ids[p.name]}/", ids[p.name],
                                 bool(p.extra.get(flag)))
                      for p in finished if cost(p) is not None and p.name in ids]
            charts.append({"title": title, "svg": scatter(points, title, frontier.metric, frontier.greater),
                           "count": len(points), "missing": len(finished) - len(points)})
        groups.append({"frontier": frontier, "charts": charts, "ids": ids,
                       "name": frontier.group or frontier.metric})
    return {"groups": groups, "problem": None}


def scatter(points: list[ChartPoint], x_label: str, y_label: str, greater: bool) -> Markup:
    if not points:
        return Markup("")
    xs, ys = [p.x for p in points], [p.y for p in points]
    log_x = min(xs) > 0 and max(xs) / min(xs) > 20
    to_x = _axis([math.log10(x) for x in xs] if log_x else xs, PAD_LEFT, WIDTH - PAD)
    to_y = _axis(ys, HEIGHT - PAD_BOTTOM, PAD)
    place = lambda x, y: (to_x(math.log10(x) if log_x else x), to_y(y))  # noqa: E731
    parts = [f'<svg class="scatter" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(y_label)} against {escape(x_label)}">',
             f'<line class="axis" x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH - PAD}" '
             f'y2="{HEIGHT - PAD_BOTTOM}"/><line class="axis" x1="{PAD_LEFT}" y1="{PAD}" x2="{PAD_LEFT}" '
             f'y2="{HEIGHT - PAD_BOTTOM}"/>']
    parts += _ticks(xs, ys, log_x, place)
    front = staircase([(p.x, p.y) for p in points if p.optimal], maximize_quality=greater)
    if len(front) > 1:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (place(cx, cy) for cx, cy in front))
        parts.append(f'<polyline class="front" points="{line}"/>')
    for p in sorted(points, key=lambda p: p.optimal):  # optimal points drawn last, on top
        x, y = place(p.x, p.y)
        parts.append(f'<a href="{escape(p.href)}" class="pt-link"><circle class="pt{" pareto" if p.optimal else ""}" '
                     f'cx="{x:.1f}" cy="{y:.1f}" r="6" data-run="{escape(p.run_id)}" '
                     f'data-label="{escape(p.label)}"><title>{escape(p.label)}</title></circle></a>')
    parts.append(f'<text class="label" x="{(PAD_LEFT + WIDTH - PAD) / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
                 f'{escape(x_label)}{" (log scale)" if log_x else ""}</text>')
    parts.append(f'<text class="label" x="14" y="{(HEIGHT - PAD_BOTTOM) / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(HEIGHT - PAD_BOTTOM) / 2})">{escape(y_label)}</text></svg>')
    return Markup("".join(parts))


def _axis(values: list[float], low_px: float, high_px: float) -> Callable[[float], float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    margin = (hi - lo) * 0.06
    lo, hi = lo - margin, hi + margin
    return lambda v: low_px + (v - lo) / (hi - lo) * (high_px - low_px)


def _ticks(xs: list[float], ys: list[float], log_x: bool, place) -> list[str]:
    """Labels at the ends of each axis: the least and the most, which is what a reader compares."""
    parts = []
    for value in sorted({min(xs), max(xs)}):
        x, _ = place(value, min(ys))
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" text-anchor="middle">'
                     f'{escape(_money(value))}</text>')
    for value in sorted({min(ys), max(ys)}):
        _, y = place(min(xs), value)
        parts.append(f'<text class="tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.4g}</text>')
    return parts


def _money(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:.2f}" if value >= 1 else f"${value:.3g}"


def questions_from(query: dict[str, str]) -> tuple[Questions, list[str]]:
    """The CLI's constraint options from the page's form; a field that is not a number is named."""
    values, problems = {}, []
    for name in ("min_metric", "budget", "max_latency_ms"):
        text = (query.get(name) or "").strip()
        if not text:
            continue
        try:
            values[name] = float(text)
        except ValueError:
            problems.append(f"{name.replace('_', ' ')}: {text!r} is not a number")
    return Questions(**values), problems

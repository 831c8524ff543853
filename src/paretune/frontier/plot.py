"""frontier.png: quality against training dollars (and serving dollars), the frontier drawn.

Drawn on a bare matplotlib Figure (the Agg canvas), never pyplot, so it works with no display
and changes no global backend state of a program that imports paretune.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from paretune.frontier.pareto import staircase
from paretune.frontier.points import Point

OPTIMAL, DOMINATED, THRESHOLD = "#d62728", "#7f7f7f", "#1f77b4"


def draw(points: list[Point], path: Path, *, greater: bool, train_cost: Callable[[Point], float | None],
         train_label: str, title: str, threshold: float | None = None) -> Path:
    figure = render(points, greater=greater, train_cost=train_cost, train_label=train_label, title=title,
                    threshold=threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def render(points: list[Point], *, greater: bool, train_cost: Callable[[Point], float | None],
           train_label: str, title: str, threshold: float | None = None) -> Figure:
    """The figure: one panel per cost axis, one legend below them all (never on a point)."""
    panels = [("pareto_train", train_cost, train_label, "no training dollars: pass --price")]
    if any(p.serve_usd_per_million is not None for p in points):
        panels.append(("pareto_serve", lambda p: p.serve_usd_per_million,
                       "serving $ per million predictions", "no inference.json"))
    figure = Figure(figsize=(6.4 * len(panels), 5.2), layout="constrained")
    metric = next((p.metric for p in points if p.metric), "quality")
    legend: dict[str, object] = {}
    for i, (flag, cost, label, missing) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        _panel(axes, points, flag, cost, greater)
        if threshold is not None:
            axes.axhline(threshold, color=THRESHOLD, linestyle="--", linewidth=1, zorder=0,
                         label=f"--min-metric {threshold:g}", gid="min-metric")
        axes.set_xlabel(label)
        axes.set_ylabel(f"{metric} ({'higher' if greater else 'lower'} is better)")
        if not any(p.finished and cost(p) is not None for p in points):
            axes.text(0.5, 0.5, missing, ha="center", va="center", transform=axes.transAxes)
        for handle, text in zip(*axes.get_legend_handles_labels()):
            legend.setdefault(text, handle)
    if legend:  # below the panels, outside every axes: it cannot cover a point or a name
        figure.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=len(legend),
                      fontsize=8, frameon=False)
    figure.suptitle(title)
    return figure


def _panel(axes, points: list[Point], flag: str, cost: Callable[[Point], float | None], greater: bool) -> None:
    shown = [p for p in points if p.finished and cost(p) is not None]
    if not shown:
        return
    optimal = [p for p in shown if p.extra.get(flag)]
    dominated = [p for p in shown if not p.extra.get(flag)]
    if dominated:
        axes.scatter([cost(p) for p in dominated], [p.quality for p in dominated], color=DOMINATED,
                     label="dominated", zorder=2)
    if optimal:
        line = staircase([(cost(p), p.quality) for p in optimal], maximize_quality=greater)
        axes.plot([c for c, _ in line], [q for _, q in line], color=OPTIMAL, linewidth=1.2, zorder=1)
        axes.scatter([cost(p) for p in optimal], [p.quality for p in optimal], color=OPTIMAL,
                     label="Pareto-optimal", zorder=3)
    costs = [cost(p) for p in shown]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        axes.set_xscale("log")
    axes.margins(x=0.12, y=0.1)  # room for the names inside the axes, where the layout keeps them
    right_of = _rightmost_third(axes)
    for n, p in enumerate(shown):
        # Names of points in the right third go to their left, so they are not cut at the edge;
        # alternating heights make neighbouring names overlap less.
        left = cost(p) >= right_of
        axes.annotate(p.name, (cost(p), p.quality), textcoords="offset points", fontsize=8,
                      xytext=(-5 if left else 5, 5 if n % 2 == 0 else -11), ha="right" if left else "left")
    axes.grid(True, alpha=0.3)


def _rightmost_third(axes) -> float:
    """The cost beyond which a point sits in the right third of the axis (log-aware)."""
    low, high = axes.get_xlim()
    if axes.get_xscale() == "log":
        return low * (high / low) ** (2 / 3)
    return low + (high - low) * 2 / 3

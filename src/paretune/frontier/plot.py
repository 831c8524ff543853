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

OPTIMAL, DOMINATED = "#d62728", "#7f7f7f"


def draw(points: list[Point], path: Path, *, greater: bool, train_cost: Callable[[Point], float | None],
         train_label: str, title: str) -> Path:
    panels = [("pareto_train", train_cost, train_label, "no training dollars: pass --price")]
    if any(p.serve_usd_per_million is not None for p in points):
        panels.append(("pareto_serve", lambda p: p.serve_usd_per_million,
                       "serving $ per million predictions", "no inference.json"))
    figure = Figure(figsize=(6.4 * len(panels), 4.8), layout="constrained")
    metric = next((p.metric for p in points if p.metric), "quality")
    for i, (flag, cost, label, missing) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        _panel(axes, points, flag, cost, greater)
        axes.set_xlabel(label)
        axes.set_ylabel(f"{metric} ({'higher' if greater else 'lower'} is better)")
        if not any(p.finished and cost(p) is not None for p in points):
            axes.text(0.5, 0.5, missing, ha="center", va="center", transform=axes.transAxes)
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


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
    for n, p in enumerate(shown):
        # Alternate label offsets so neighbouring points' names overlap less.
        axes.annotate(p.name, (cost(p), p.quality), textcoords="offset points",
                      xytext=(5, 5 if n % 2 == 0 else -11), fontsize=8)
    costs = [cost(p) for p in shown]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        axes.set_xscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right" if greater else "upper right", fontsize=8)

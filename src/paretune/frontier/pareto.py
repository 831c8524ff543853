"""Pareto optimality: which points no other point beats on every axis at once.

Hand-written rather than taken from a library because the rules must be exact and visible:
a point is dominated only by one at least as good on every axis and strictly better on one.
Ties therefore never dominate: two variants with the same quality and the same cost are both
optimal, and a cheaper variant of equal quality dominates a dearer one. Points with a missing
value on any axis take no part (they are neither optimal nor dominating). Quadratic in the
number of points, which is fine for the tens to hundreds of variants a sweep has.

An axis may be given a relative tolerance: values that close count as equal there. Costs measured
by timing (serving $ per million predictions from a latency benchmark, training $ from wall time)
move by a few percent from one measurement to the next; without a tolerance 0.099 vs 0.103 $/1M
would keep a worse variant on the frontier only because its benchmark ran a little faster.
"""
from __future__ import annotations

import math
from typing import Sequence

Value = float | None


# Cost differences within 5% are ties: about the spread of repeated latency benchmarks and
# training timings of the same variant on a shared CPU (docs/sweeps.md).
COST_TIE_TOLERANCE = 0.05


def pareto_optimal(points: Sequence[Sequence[Value]], maximize: Sequence[bool],
                   rel_tol: Sequence[float] | None = None) -> list[bool]:
    """For each point, whether it is Pareto-optimal; `maximize[i]` says which way axis i is better,
    `rel_tol[i]` within what relative difference two values on axis i are a tie (default exact)."""
    usable = [_complete(p, len(maximize)) for p in points]
    keys = [[v if up else -v for v, up in zip(p, maximize)] if ok else None for p, ok in zip(points, usable)]
    return [key is not None and not any(other is not None and dominates(other, key, rel_tol) for other in keys)
            for key in keys]


def dominates(a: Sequence[float], b: Sequence[float], rel_tol: Sequence[float] | None = None) -> bool:
    """a dominates b (larger is better on every axis of these keys): nowhere worse, somewhere better,
    where differences within an axis's relative tolerance count as neither."""
    tol = rel_tol or [0.0] * len(a)
    ties = [x == y or abs(x - y) <= t * max(abs(x), abs(y)) for x, y, t in zip(a, b, tol)]
    triples = list(zip(a, b, ties))
    return all(x >= y or tie for x, y, tie in triples) and any(x > y and not tie for x, y, tie in triples)


def _complete(point: Sequence[Value], axes: int) -> bool:
    if len(point) != axes:
        raise ValueError(f"point {point} has {len(point)} values, expected {axes}")
    return all(v is not None and not math.isnan(v) for v in point)


def staircase(front: Sequence[tuple[float, float]], maximize_quality: bool = True) -> list[tuple[float, float]]:
    """The frontier as a line to draw: (cost, quality) corners from cheapest to dearest, with a
    horizontal run at each quality until the next optimal point improves on it."""
    ordered = sorted(front, key=lambda cq: (cq[0], -cq[1] if maximize_quality else cq[1]))
    line: list[tuple[float, float]] = []
    for cost, quality in ordered:
        if line:
            line.append((cost, line[-1][1]))
        line.append((cost, quality))
    return line

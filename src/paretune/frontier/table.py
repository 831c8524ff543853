"""The frontier table: one row per variant, Pareto-optimal ones marked, as aligned Markdown.

Aligned Markdown reads in a terminal and renders in frontier.md, so both show the same text.
Marks: T = Pareto-optimal for quality vs training dollars, S = for quality vs serving dollars.
"""
from __future__ import annotations

from paretune.frontier.points import Point
from paretune.frontier.projection import Scale


def fmt_usd(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 1000:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    if value >= 1e-4:
        return f"${value:.3g}"
    return f"${value:.1e}" if value > 0 else "$0"


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def sort_points(points: list[Point], greater: bool) -> list[Point]:
    """Finished variants best first, then the rest in their order."""
    finished = sorted((p for p in points if p.finished), key=lambda p: -p.quality if greater else p.quality)
    return finished + [p for p in points if not p.finished]


def rows(points: list[Point], scale: Scale) -> tuple[list[str], list[list[str]]]:
    metric = next((p.metric for p in points if p.metric), "metric")
    header = ["pareto", "variant", "method", metric, "train $", "run time", "serve $/1M", "p50 ms",
              "size MiB", "trainable %"]
    generates = any(p.tokens_per_s is not None for p in points)  # a generative run, benched
    if generates:
        header[8:8] = ["tokens/s", "TTFT ms", "serve $/1M tokens"]
    if scale.train_rows is not None:
        header += [f"train $ @{scale.train_rows:,.0f} rows", f"run time @{scale.train_rows:,.0f} rows"]
    if scale.predictions_per_month is not None:
        header += [f"serve $/month @{scale.predictions_per_month:,.0f}"]
    show_status = any(not p.finished for p in points)
    if show_status:
        header += ["status"]
    body = []
    for p in points:
        marks = " ".join(m for m, key in (("T", "pareto_train"), ("S", "pareto_serve")) if p.extra.get(key))
        row = [marks, p.name, p.method or "", _num(p.quality, 4), fmt_usd(p.train_usd), fmt_time(p.run_s),
               fmt_usd(p.serve_usd_per_million), _num(p.latency_p50_ms, 2), _num(p.size_mib, 1),
               _num(p.trainable_percent, 2)]
        if generates:
            row[8:8] = [_num(p.tokens_per_s, 1), _num(p.time_to_first_token_ms, 0),
                        fmt_usd(p.serve_usd_per_million_tokens)]
        if scale.train_rows is not None:
            hours = p.extra.get("run_h_at_scale")
            seconds = hours * 3600 if hours is not None else None
            row += [fmt_usd(p.extra.get("train_usd_at_scale")), fmt_time(seconds)]
        if scale.predictions_per_month is not None:
            row += [fmt_usd(p.extra.get("serve_usd_per_month"))]
        if show_status:
            row += [_status(p)]
        body.append(row)
    return header, body


def _status(point: Point) -> str:
    if point.finished:
        return ""
    error = " ".join((point.error or "").split())
    return f"{point.status}: {error[:60]}" if error else point.status


def markdown(header: list[str], body: list[list[str]]) -> str:
    cells = [[c.replace("|", "\\|") for c in row] for row in [header, *body]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [i >= 3 and name != "status" for i, name in enumerate(header)]  # right-aligned columns

    def line(row: list[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if num else "-" * (w + 2) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])

"""What each variant would cost at production scale, from what it cost on the sample.

Training: the time that grows with the training rows (data preparation and the training steps,
from cost.json `phases_s`) is multiplied by target rows / sample rows; the rest (model loading,
evaluation on the fixed validation set) stays as measured. Dollars follow time at the run's
own price. This assumes the same epochs, batch size and device, and throughput that does not
change with data size, so it is a first estimate, not a quote: more data usually needs fewer
epochs, which makes it an upper bound.

Serving: dollars per million predictions (inference.json, measured at a large batch on the
benchmark device) times predictions per month / 1e6. Latency does not change with volume.
"""
from __future__ import annotations

from dataclasses import dataclass

from paretune.frontier.points import Point


@dataclass(frozen=True)
class Scale:
    train_rows: float | None = None
    predictions_per_month: float | None = None

    @property
    def any(self) -> bool:
        return self.train_rows is not None or self.predictions_per_month is not None

    def describe(self) -> str:
        parts = []
        if self.train_rows is not None:
            parts.append(f"training on {self.train_rows:,.0f} rows")
        if self.predictions_per_month is not None:
            parts.append(f"serving {self.predictions_per_month:,.0f} predictions a month")
        return " and ".join(parts)


def projected_run_s(point: Point, train_rows: float) -> float | None:
    """Wall seconds of the same run on `train_rows` rows."""
    if point.run_s is None or not point.train_rows:
        return None
    grows = point.scaled_s if point.scaled_s is not None else point.run_s
    factor = train_rows / point.train_rows
    return point.run_s - grows + grows * factor


def projected_train_usd(point: Point, train_rows: float) -> float | None:
    seconds = projected_run_s(point, train_rows)
    if seconds is None or point.train_usd is None or not point.run_s:
        return None
    return point.train_usd * seconds / point.run_s


def serve_usd_per_month(point: Point, predictions_per_month: float) -> float | None:
    if point.serve_usd_per_million is None:
        return None
    return point.serve_usd_per_million * predictions_per_month / 1e6


def apply(points: list[Point], scale: Scale) -> None:
    """Store projections in each point's `extra` (train_usd_at_scale, run_h_at_scale, serve_usd_per_month)."""
    for point in points:
        if scale.train_rows is not None:
            point.extra["train_usd_at_scale"] = projected_train_usd(point, scale.train_rows)
            seconds = projected_run_s(point, scale.train_rows)
            point.extra["run_h_at_scale"] = seconds / 3600 if seconds is not None else None
        if scale.predictions_per_month is not None:
            point.extra["serve_usd_per_month"] = serve_usd_per_month(point, scale.predictions_per_month)


def train_cost(point: Point, scale: Scale) -> float | None:
    """The training dollars a question is answered with: projected when a scale is given."""
    return point.extra.get("train_usd_at_scale") if scale.train_rows is not None else point.train_usd

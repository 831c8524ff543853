"""A run's curves from its metrics.jsonl, read from a byte offset so a page that polls gets only
the lines written since its last look.

metrics.jsonl is appended one JSON line per logged step (RunFolder.append_metrics). Only whole
lines are read: a line being written has no newline yet and waits for the next poll. A resumed
run rewrites the file shorter (RunFolder.truncate_metrics): an offset past its end answers
`reset` and the page starts again from 0. A run of 100k steps is thinned to MAX_POINTS rows,
keeping the evaluations (few, and the point of the chart) before the training-loss rows.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MAX_POINTS = 2000
# Per-row keys that are bookkeeping, not curves.
_NOT_CURVES = {"step", "epoch", "train_s"}


def read_curves(run_dir: Path, offset: int = 0, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """{"offset": where to read from next, "reset": the file was rewritten, "steps": [...],
    "series": {name: [value or None per step]}, "rows": rows read, "kept": rows returned}."""
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            reset = offset > size
            start = 0 if reset else max(0, offset)
            handle.seek(start)
            data = handle.read(size - start)
    except OSError:  # not written yet (a run in set-up)
        return {"offset": 0, "reset": offset > 0, "steps": [], "series": {}, "rows": 0, "kept": 0}
    whole = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
    lines = [line for line in data[:whole].split(b"\n") if line.strip()]
    # Thinned before parsing: of 100k lines only the ~2,000 drawn are parsed.
    chosen = thin(lines, max_points, lambda line: b'"validation"' in line)
    steps, series = to_columns(_parse(chosen))
    return {"offset": start + whole, "reset": reset, "steps": steps, "series": series,
            "rows": len(lines), "kept": len(steps)}


def _parse(lines: list[bytes]) -> list[dict]:
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # a damaged line: skipped here; `paretune train --resume` reports it
            continue
        if isinstance(row, dict) and _is_number(row.get("step")):
            rows.append(row)
    return rows


def thin(items: list, max_points: int, is_evaluation=lambda row: isinstance(row.get("validation"), dict)) -> list:
    """At most about `max_points` items, evenly spaced, evaluations kept first, the last always."""
    if len(items) <= max_points:
        return items
    evaluations = [i for i, item in enumerate(items) if is_evaluation(item)]
    budget_eval = min(len(evaluations), max_points // 2)
    chosen = set(_spread(evaluations, budget_eval))
    chosen |= set(_spread(list(range(len(items))), max_points - len(chosen)))
    chosen.add(len(items) - 1)
    return [items[i] for i in sorted(chosen)]


def _spread(indices: list[int], count: int) -> list[int]:
    if count <= 0 or not indices:
        return []
    if count >= len(indices):
        return indices
    stride = len(indices) / count
    return [indices[int(k * stride)] for k in range(count)]


def to_columns(rows: list[dict]) -> tuple[list[float], dict[str, list]]:
    """Steps and one column per numeric value (top level, and `validation.NAME`), None where a
    row lacks it; nested breakdowns (per-class scores, the confusion matrix) are left out."""
    names: dict[str, None] = {}
    flat_rows = []
    for row in rows:
        flat = {k: v for k, v in row.items() if k not in _NOT_CURVES and _is_number(v)}
        for split in ("validation", "test"):
            scores = row.get(split)
            if isinstance(scores, dict):
                flat.update({f"{split}.{k}": v for k, v in scores.items() if _is_number(v)})
        names.update(dict.fromkeys(flat))
        flat_rows.append(flat)
    steps = [row["step"] for row in rows]
    return steps, {name: [flat.get(name) for flat in flat_rows] for name in names}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

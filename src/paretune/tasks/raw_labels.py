"""Checks on a label as stored, before a task turns it into a target.

A reader keeps labels as the file holds them, so two kinds of mistake would otherwise become
classes of their own: spreadsheet and pandas exports write a missing label as the text `NaN`,
`None`, `NA` (a 2-class file silently trains a 4-class model), and Parquet or JSON lines can hold
a list where one label is wanted (`[0]` becomes the class "[0]"). Each check returns a message
(the caller adds file, row and field) or None when the label is fine.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from paretune.data.rows import MISSING_MARKERS, is_missing_marker  # noqa: F401 (MISSING_MARKERS: API)

log = logging.getLogger("paretune.data")

_ROWS_SHOWN = 5


def scalar_problem(raw: Any) -> str | None:
    """A list or object where the task wants one label per row."""
    if isinstance(raw, (list, tuple, np.ndarray)):
        return (f"expected a single label, found a list {_short(raw)}; give one value per row "
                "(for several labels per text use task.type: multilabel)")
    if isinstance(raw, dict):
        return f"expected a single label, found an object {_short(raw)}; give one value per row"
    return None


def marker_problem(raw: Any, declared: Iterable[str] | None) -> str | None:
    """A missing-value marker used as a label, unless task.labels names it as a real class."""
    if not is_missing_marker(raw) or str(raw).strip() in (declared or ()):
        return None
    return (f"label {raw!r} marks a missing value, not a class; fill in the label or drop the row "
            f"(if {str(raw).strip()!r} is a real class, list it in task.labels)")


def list_item_problem(item: Any, declared: Iterable[str] | None) -> str | None:
    """One label inside a multilabel list."""
    if isinstance(item, (list, tuple, dict, np.ndarray)):
        return f"expected a list of labels, found a nested {type(item).__name__} {_short(item)} in it"
    if item is None or (isinstance(item, float) and item != item):  # NaN is the only value != itself
        return "a label in the list is missing (null or NaN); remove it or fill it in"
    return marker_problem(item, declared)


def warn_declared_markers(labels: list[tuple[int, Any]], file: str, field: str) -> None:
    """Say loudly when a declared class looks like a missing value: it is kept, but often a mistake.

    `labels` pairs each data row with one of its label values (as text).
    """
    rows_by_marker: dict[str, list[int]] = {}
    for row, value in labels:
        if is_missing_marker(value):
            rows_by_marker.setdefault(str(value).strip(), []).append(row)
    for marker, rows in rows_by_marker.items():
        shown = ", ".join(map(str, rows[:_ROWS_SHOWN])) + (", ..." if len(rows) > _ROWS_SHOWN else "")
        log.warning(
            "%s, field '%s': %d row(s) have the label %r (rows %s), which usually marks a missing "
            "label; it is kept as a class because task.labels lists it",
            file, field, len(rows), marker, shown,
        )


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Render a metrics dict (as returned by the other modules here) as plain-text tables.

The layout is: scalar metrics, then per-class / per-type scores, then the confusion matrix. Other
nested values are left out; the JSON file written with the run keeps everything.
"""
from __future__ import annotations

import io
from numbers import Integral, Number

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

BREAKDOWN_KEYS = ("per_class", "per_type")
BREAKDOWN_COLUMNS = ("precision", "recall", "f1", "support")
# Past this many labels a confusion matrix no longer fits a terminal and stops being readable.
MAX_MATRIX_LABELS = 20
WIDTH = 100


def format_metrics(metrics: dict, title: str) -> str:
    """Plain text: scalar metrics, per-class/per-type table, confusion matrix (when small enough)."""
    # record=True with a throwaway file: render to text without writing to the real terminal.
    console = Console(record=True, width=WIDTH, file=io.StringIO(), color_system=None)
    # Text objects, not strings, throughout: rich would read a label like "[CLS]" as markup.
    console.print(Text(title))
    console.print(_scalar_table(metrics))

    breakdown_key = next((key for key in BREAKDOWN_KEYS if isinstance(metrics.get(key), dict)), None)
    if breakdown_key is not None:
        console.print(Text(breakdown_key.replace("_", " ")))
        console.print(_breakdown_table(metrics[breakdown_key], breakdown_key))

    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and 0 < len(matrix) <= MAX_MATRIX_LABELS:
        console.print(Text("confusion matrix (rows = true, columns = predicted)"))
        _print_matrix(console, matrix, _matrix_names(metrics, len(matrix)))
    return console.export_text()


def _format_number(value: Number) -> Text:
    # Counts stay integers; everything else gets 4 decimals so columns line up.
    if isinstance(value, Integral):
        return Text(str(value))
    return Text(f"{float(value):.4f}")


def _is_scalar(value: object) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _scalar_table(metrics: dict) -> Table:
    table = Table(box=box.SIMPLE)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if _is_scalar(value):
            table.add_row(Text(str(name)), _format_number(value))
    return table


def _breakdown_table(breakdown: dict, key: str) -> Table:
    table = Table(box=box.SIMPLE)
    table.add_column("class" if key == "per_class" else "type")
    for column in BREAKDOWN_COLUMNS:
        table.add_column(column, justify="right")
    for label, scores in breakdown.items():
        cells = [
            _format_number(scores[c]) if _is_scalar(scores.get(c)) else Text("") for c in BREAKDOWN_COLUMNS
        ]
        table.add_row(Text(str(label)), *cells)
    return table


def _matrix_names(metrics: dict, size: int) -> list[str]:
    # per_class is built in the same label order as the matrix; without it, number the rows.
    names = [str(name) for name in metrics.get("per_class", {})]
    return names if len(names) == size else [str(i) for i in range(size)]


def _print_matrix(console: Console, matrix: list[list[int]], names: list[str]) -> None:
    """Columns are numbered; rows carry "number name", or just the number plus a legend when long
    names would not fit. A table rich has to squeeze would wrap counts across lines and mislead,
    so one too wide even with numbers (twenty labels with five-digit counts) is left out."""
    numbers = [str(i) for i in range(len(names))]
    if names != numbers:
        named = _matrix_table(matrix, [f"{i} {name}" for i, name in enumerate(names)])
        if _fits(console, named):
            console.print(named)
            return
    numbered = _matrix_table(matrix, numbers)
    if not _fits(console, numbered):
        console.print(Text("(too wide for the terminal; see confusion_matrix in the metrics JSON)"))
        return
    console.print(numbered)
    if names != numbers:
        console.print(Text("labels: " + ", ".join(f"{i} = {name}" for i, name in enumerate(names))))


def _fits(console: Console, table: Table) -> bool:
    # Measure against unlimited room: measuring within the console caps the answer at its width.
    unlimited = console.options.update_width(10_000)
    return Measurement.get(console, unlimited, table).maximum <= console.width


def _matrix_table(matrix: list[list[int]], row_headers: list[str]) -> Table:
    # One space between columns instead of rich's two, so twenty columns of counts fit.
    table = Table(box=box.SIMPLE, padding=(0, 0, 0, 1))
    table.add_column("true \\ pred", no_wrap=True)
    for index in range(len(row_headers)):
        table.add_column(str(index), justify="right")
    for header, row in zip(row_headers, matrix):
        table.add_row(Text(header), *(Text(str(count)) for count in row))
    return table

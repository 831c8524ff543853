"""`--write-clean OUT`: a filtered copy of the training file without the rows the audit flags.

The input is never touched. csv, tsv and JSON-lines files are copied line for line, leaving out
the physical lines of dropped rows, so quoting, columns and the rows kept are byte-identical;
parquet is filtered with pyarrow. Which findings drop a row is the caller's choice (`drops`).
`--fix labels` keeps suspect rows and writes the audit's suggested label into them instead
(`relabel`): only those rows are re-serialised, every other line stays byte-identical.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

from paretune.errors import ParetuneError

DROPPABLE = ("labels", "duplicates", "leaks", "lengths", "outliers")
_FINDINGS = {"labels": "suspect_labels", "duplicates": "duplicates", "leaks": "leaks",
             "lengths": "lengths", "outliers": "outliers"}


def rows_to_drop(findings: dict[str, Any], drops: Iterable[str], train_file: str) -> set[int]:
    """The 1-based data rows of the training file that the chosen findings name."""
    rows = set()
    for drop in drops:
        if drop not in _FINDINGS:
            raise ParetuneError(f"--drop {drop}: choose from {', '.join(DROPPABLE)}")
        rows |= {f["row"] for f in findings.get(_FINDINGS[drop]) or [] if f["file"] == train_file}
    return rows


def labels_to_fix(findings: dict[str, Any], train_file: str) -> dict[int, str]:
    """{1-based data row: suggested label} for every suspect label of the training file."""
    return {f["row"]: f["suggested"] for f in findings.get("suspect_labels") or []
            if f["file"] == train_file and f.get("suggested") is not None}


def write_clean(source: Path, fmt: str, drop_rows: set[int], out: Path, encoding: str = "utf-8",
                relabel: dict[int, str] | None = None, label_column: str = "label") -> int:
    """Write `source` without the given data rows (and with `relabel`'s rows given their new
    label) to `out`; returns the rows written."""
    if out.exists() and out.resolve() == source.resolve():
        raise ParetuneError(f"--write-clean {out}: that is the input file; the audit never overwrites it")
    if out.exists():
        raise ParetuneError(f"--write-clean {out}: the file exists; name a new file")
    out.parent.mkdir(parents=True, exist_ok=True)
    relabel = {row: label for row, label in (relabel or {}).items() if row not in drop_rows}
    if fmt == "parquet":
        return _write_parquet(source, drop_rows, out, relabel, label_column)
    if fmt not in ("csv", "tsv", "jsonl"):
        raise ParetuneError(f"--write-clean supports csv, tsv, jsonl and parquet files, not {fmt} ({source})")
    text = source.read_bytes().decode(encoding).removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    spans = _json_spans(lines) if fmt == "jsonl" else _delimited_spans(text, fmt)
    if spans is None:
        raise ParetuneError(f"--write-clean: {source} is one JSON array, not JSON lines; convert it first")
    dropped_lines = {line for row, (first, last) in spans.items() if row in drop_rows
                     for line in range(first, last + 1)}
    if relabel:
        lines = _relabelled(lines, spans, relabel, fmt, label_column, source)
    kept = [line for number, line in enumerate(lines, 1) if number not in dropped_lines]
    out.write_bytes("".join(kept).encode(encoding))
    return len(spans) - len(drop_rows & set(spans))


def _delimited_spans(text: str, fmt: str) -> dict[int, tuple[int, int]]:
    """{data row: (first line, last line)}, numbered as readers.py numbers them."""
    reader = csv.reader(io.StringIO(text, newline=""), **_dialect(fmt))
    spans, row, header_seen, start = {}, 0, False, 1
    for fields in reader:
        first, start = start, reader.line_num + 1
        if not fields:
            continue
        if not header_seen:
            header_seen = True
            continue
        row += 1
        spans[row] = (first, reader.line_num)
    return spans


def _json_spans(lines: list[str]) -> dict[int, tuple[int, int]] | None:
    if "".join(lines).lstrip().startswith("["):
        return None
    spans, row = {}, 0
    for number, line in enumerate(lines, 1):
        if line.strip():
            row += 1
            spans[row] = (number, number)
    return spans


def _relabelled(lines: list[str], spans, relabel: dict[int, str], fmt: str, column: str, source: Path) -> list[str]:
    """`lines` with each relabelled row's label field replaced (a multi-line row becomes one line)."""
    lines = list(lines)
    header = None if fmt == "jsonl" else next(_reader([lines[0]], fmt))
    if header is not None and column not in header:
        raise ParetuneError(f"--fix labels: {source} has no label column {column!r} (header: {', '.join(header)})")
    for row, label in relabel.items():
        if row not in spans:
            continue
        first, last = spans[row]
        text = "".join(lines[first - 1:last])
        ending = text[len(text.rstrip("\r\n")):] or "\n"
        if fmt == "jsonl":
            record = json.loads(text)
            old = record.get(column)
            record[column] = int(label) if isinstance(old, int) and label.lstrip("-").isdigit() else label
            new = json.dumps(record, ensure_ascii=False)
        else:
            fields = next(_reader([text], fmt))
            fields[header.index(column)] = label
            new = "\t".join(fields) if fmt == "tsv" else _csv_line(fields)  # tsv fields are raw (QUOTE_NONE)
        lines[first - 1:last] = [new + ending] + [""] * (last - first)
    return lines


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def _dialect(fmt: str) -> dict[str, Any]:
    return {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}


def _reader(lines: list[str], fmt: str):
    return csv.reader(io.StringIO("".join(lines), newline=""), **_dialect(fmt))


def _write_parquet(source: Path, drop_rows: set[int], out: Path, relabel: dict[int, str] | None = None,
                   column: str = "label") -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    if relabel:
        if column not in table.column_names:
            raise ParetuneError(f"--fix labels: {source} has no label column {column!r}")
        values = table.column(column).to_pylist()
        for row, label in relabel.items():
            if 1 <= row <= len(values):
                old = values[row - 1]
                values[row - 1] = int(label) if isinstance(old, int) and label.lstrip("-").isdigit() else label
        table = table.set_column(table.column_names.index(column), column,
                                 pa.array(values, type=table.schema.field(column).type))
    keep = pa.array([row not in drop_rows for row in range(1, table.num_rows + 1)])
    kept = table.filter(keep)
    pq.write_table(kept, out)
    return kept.num_rows


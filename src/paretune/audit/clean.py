"""`--write-clean OUT`: a filtered copy of the training file without the rows the audit flags.

The input is never touched. csv, tsv and JSON-lines files are copied line for line, leaving out
the physical lines of dropped rows, so quoting, columns and the rows kept are byte-identical;
parquet is filtered with pyarrow. Which findings drop a row is the caller's choice (`drops`).
"""
from __future__ import annotations

import csv
import io
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


def write_clean(source: Path, fmt: str, drop_rows: set[int], out: Path, encoding: str = "utf-8") -> int:
    """Write `source` without the given data rows to `out`; returns the rows written."""
    if out.exists() and out.resolve() == source.resolve():
        raise ParetuneError(f"--write-clean {out}: that is the input file; the audit never overwrites it")
    if out.exists():
        raise ParetuneError(f"--write-clean {out}: the file exists; name a new file")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        return _write_parquet(source, drop_rows, out)
    if fmt not in ("csv", "tsv", "jsonl"):
        raise ParetuneError(f"--write-clean supports csv, tsv, jsonl and parquet files, not {fmt} ({source})")
    text = source.read_bytes().decode(encoding).removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    spans = _json_spans(lines) if fmt == "jsonl" else _delimited_spans(text, fmt)
    if spans is None:
        raise ParetuneError(f"--write-clean: {source} is one JSON array, not JSON lines; convert it first")
    dropped_lines = {line for row, (first, last) in spans.items() if row in drop_rows
                     for line in range(first, last + 1)}
    kept = [line for number, line in enumerate(lines, 1) if number not in dropped_lines]
    out.write_bytes("".join(kept).encode(encoding))
    return len(spans) - len(drop_rows & set(spans))


def _delimited_spans(text: str, fmt: str) -> dict[int, tuple[int, int]]:
    """{data row: (first line, last line)}, numbered as readers.py numbers them."""
    options: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    reader = csv.reader(io.StringIO(text, newline=""), **options)
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


def _write_parquet(source: Path, drop_rows: set[int], out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    keep = pa.array([row not in drop_rows for row in range(1, table.num_rows + 1)])
    kept = table.filter(keep)
    pq.write_table(kept, out)
    return kept.num_rows


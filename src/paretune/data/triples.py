"""Knowledge-graph files: triples (head, relation, tail) and entity descriptions (id, text).

Both read TSV, CSV or JSON lines (by extension, or `fmt`); a first row that names the columns
(`head, relation, tail` / `id, text`) is a header and skipped. Every problem of a file is reported
at once, each with its file, row and line: a row without three fields, an empty field, a self-loop
(head = tail), a triple repeated, an entity id described twice.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from paretune.data.examples import Example
from paretune.errors import DataError, DataProblem

TRIPLE_COLUMNS = ("head", "relation", "tail")
ENTITY_COLUMNS = ("id", "text")


def _format(path: Path, fmt: str | None) -> str:
    if fmt in ("tsv", "csv", "jsonl"):
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    return {"txt": "tsv", "json": "jsonl"}.get(suffix, suffix if suffix in ("tsv", "csv", "jsonl") else "tsv")


def _rows(path: Path, fmt: str | None, columns: tuple[str, ...], encoding: str) -> Iterator[tuple[int, int, list | str]]:
    """(row, line, fields) of each data row; fields is an error message for an unreadable JSON line."""
    kind = _format(path, fmt)
    try:
        text = path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(DataProblem(str(path), f"cannot read: {err}")) from None
    lines = [line for line in text.splitlines()]
    row = 0
    if kind == "jsonl":
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row += 1
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                yield row, number, f"not JSON ({err.msg})"
                continue
            if isinstance(value, dict):
                yield row, number, [value.get(c) for c in columns] + [value[k] for k in value if k not in columns]
            else:
                yield row, number, value if isinstance(value, list) else f"not an object or a list: {value!r}"
        return
    reader = csv.reader(lines, delimiter="\t" if kind == "tsv" else ",")
    for number, fields in enumerate(reader, start=1):
        if not fields or not any(f.strip() for f in fields):
            continue
        if row == 0 and [f.strip().lower() for f in fields] == list(columns[: len(fields)]) and len(fields) >= 2:
            continue  # header
        row += 1
        yield row, number, fields


def read_triples(path: str | Path, fmt: str | None = None, encoding: str = "utf-8") -> list[Example]:
    """Each triple as an Example: text "head<TAB>relation" (what prediction takes), label (h, r, t)."""
    path = Path(path)
    examples, problems, first_row = [], [], {}
    for row, line, fields in _rows(path, fmt, TRIPLE_COLUMNS, encoding):
        problem = _triple_problem(fields)
        if problem is None:
            head, relation, tail = (str(f).strip() for f in fields)
            if (head, relation, tail) in first_row:
                problem = f"triple repeats row {first_row[(head, relation, tail)]}: ({head}, {relation}, {tail})"
            elif head == tail:
                problem = f"self-loop: head and tail are both {head!r} (nothing to predict)"
            else:
                first_row[(head, relation, tail)] = row
                examples.append(Example(f"{head}\t{relation}", (head, relation, tail), row, line))
                continue
        problems.append(DataProblem(str(path), problem, row=row, line=line))
    if problems:
        raise DataError(problems)
    if not examples:
        raise DataError(DataProblem(str(path), "no triples (head, relation, tail) in the file"))
    return examples


def _triple_problem(fields) -> str | None:
    if isinstance(fields, str):
        return fields
    if len(fields) != 3 or any(f is None for f in fields):
        return (f"a triple has 3 fields (head, relation, tail); this row has {len(fields)}: "
                f"{[f for f in fields if f is not None]!r}")
    empty = [name for name, f in zip(TRIPLE_COLUMNS, fields) if not str(f).strip()]
    return f"empty {', '.join(empty)}" if empty else None


def read_entities(path: str | Path, fmt: str | None = None, encoding: str = "utf-8") -> dict[str, str]:
    """Entity id -> its text (the id itself where the row has no text column)."""
    path = Path(path)
    texts: dict[str, str] = {}
    rows: dict[str, int] = {}
    problems = []
    for row, line, fields in _rows(path, fmt, ENTITY_COLUMNS, encoding):
        if isinstance(fields, str) or not 1 <= len(fields) <= 2 or not str(fields[0] or "").strip():
            problems.append(DataProblem(str(path), "an entity row is an id and, optionally, its text", row=row, line=line))
            continue
        entity = str(fields[0]).strip()
        text = str(fields[1]).strip() if len(fields) == 2 and fields[1] is not None else ""
        if entity in rows:
            problems.append(DataProblem(str(path), f"entity {entity!r} is described again (first on row {rows[entity]})",
                                        row=row, line=line))
            continue
        rows[entity], texts[entity] = row, text or entity
    if problems:
        raise DataError(problems)
    if not texts:
        raise DataError(DataProblem(str(path), "no entities (id, text) in the file"))
    return texts

"""Read labelled examples from csv, tsv, jsonl, parquet, CoNLL files and saved `datasets` folders.

Each tabular reader turns its file into the same `Record`s (a dict per row plus where the row came
from), and one `RowChecker` turns records into `Example`s, so the rules about empty text, missing
labels and word/tag lengths are written once for every format. Problems in rows are collected so a
user can fix a whole file in one pass; problems with the file itself (missing, undecodable, no text
column) stop at once because every later message would be noise.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from paretune.data.conll import read_conll
from paretune.data.examples import Example
from paretune.data.rows import Record, RowChecker, marker_label_problems, mixed_label_problems
from paretune.errors import DataError, DataProblem

log = logging.getLogger("paretune.data")

SUPPORTED_FORMATS = ("csv", "tsv", "jsonl", "parquet", "conll", "hf")

_FORMAT_BY_EXTENSION = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
    ".conll": "conll", ".txt": "conll", ".iob": "conll", ".bio": "conll",
}
_FORMATS_HELP = (
    "csv (.csv), tsv (.tsv), jsonl (.jsonl, .json), parquet (.parquet, .pq), "
    "conll (.conll, .txt, .iob, .bio), hf (a folder written by datasets' save_to_disk)"
)
# save_to_disk writes dataset_info.json and state.json for a Dataset, dataset_dict.json for a DatasetDict.
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_DUPLICATES_SHOWN = 5


def infer_format(path: str | Path) -> str:
    """The format name of `path` from its extension, or `hf` for a saved `datasets` folder."""
    path = Path(path)
    if path.is_dir():
        if any((path / marker).is_file() for marker in _HF_MARKERS):
            return "hf"
        raise DataError(DataProblem(
            str(path),
            "is a folder but not a Hugging Face dataset saved with save_to_disk "
            f"(none of {', '.join(_HF_MARKERS)} in it); point at a data file or a saved dataset",
        ))
    fmt = _FORMAT_BY_EXTENSION.get(path.suffix.lower())
    if fmt is None:
        found = f"extension '{path.suffix}'" if path.suffix else "no extension"
        raise DataError(DataProblem(
            str(path),
            f"cannot tell the data format from {found}; supported formats: {_FORMATS_HELP}. "
            "Set data.format to one of csv, tsv, jsonl, parquet, conll, hf to read it anyway",
        ))
    return fmt


def read_examples(
    path: str | Path,
    *,
    fmt: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    word_level: bool = False,
    require_labels: bool = True,
    encoding: str = "utf-8",
    split: str | None = None,
    tag_scheme: str = "auto",
) -> list[Example]:
    """Read every example of a data file, or raise one DataError listing all problems found.

    `word_level=True` is for token classification: each `Example.text` is a list of words and
    `Example.label` a list of tags of the same length. Labels are kept as stored (strings from
    csv/tsv, native JSON/Arrow types otherwise); the task parses them later.
    """
    path, name, fmt = _located(path, fmt)
    if fmt == "conll":
        examples, problems = read_conll(name, _decode(name, path, encoding), require_labels, tag_scheme)
    else:
        columns, records, problems = _read_table(name, path, fmt, encoding, split)
        if not records:  # nothing to check columns against; say why instead
            raise DataError(problems or DataProblem(name, "holds no examples"))
        checker = RowChecker(
            file=name,
            text_column=text_column,
            label_column=_check_columns(name, columns, text_column, label_column, require_labels),
            word_level=word_level,
            require_labels=require_labels,
            tag_scheme=tag_scheme,
            problems=problems,
        )
        examples = [ex for ex in map(checker.example, records) if ex is not None]
        if not word_level and require_labels:
            problems += mixed_label_problems(name, checker.label_column, examples)
            if problems:  # labels are checked after reading; say these now too, not on the next run
                problems += marker_label_problems(name, checker.label_column, examples)
    if problems:
        raise DataError(sorted(problems, key=lambda problem: (problem.row or 0, problem.line or 0)))
    if not examples:
        raise DataError(DataProblem(name, "holds no examples"))
    return examples


def read_records(path: str | Path, fmt: str | None = None, encoding: str = "utf-8",
                 split: str | None = None) -> tuple[list[str], list[Record], list[DataProblem]]:
    """Columns, records and per-row problems of a tabular file, for tasks that check rows their own
    way (images: a path or bytes column; chat conversations: lists of messages)."""
    path, name, fmt = _located(path, fmt)
    if fmt == "conll":
        raise DataError(DataProblem(name, "CoNLL files hold words, not a table; use csv, jsonl or parquet"))
    return _read_table(name, path, fmt, encoding, split)


def _located(path: str | Path, fmt: str | None) -> tuple[Path, str, str]:
    """The file, its name for messages and its format; a missing file or a format its name
    contradicts is an error before any row is read."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise DataError(DataProblem(name, "file not found"))
    fmt = fmt or infer_format(path)
    _check_format_fits_path(name, path, fmt)
    return path, name, fmt


def warn_duplicates(examples: list[Example], file: str) -> int:
    """Log one warning if any (text, label) pair repeats; return how many rows are repeats.

    Duplicates are legal but usually a mistake: they weigh some examples more than others and,
    once split, the same example can sit in both train and validation and inflate the score.
    """
    first_row: dict[Any, int] = {}
    repeats: list[tuple[int, int]] = []  # (row, row it repeats)
    for example in examples:
        key = (_hashable(example.text), _hashable(example.label))
        if key in first_row:
            repeats.append((example.row, first_row[key]))
        else:
            first_row[key] = example.row
    if repeats:
        shown = ", ".join(f"row {row} repeats row {first}" for row, first in repeats[:_DUPLICATES_SHOWN])
        if len(repeats) > _DUPLICATES_SHOWN:
            shown += ", ..."
        log.warning(
            "%s: %d duplicate example(s) with the same text and label (%s); they count more in "
            "training and can land in both train and validation",
            file, len(repeats), shown,
        )
    return len(repeats)


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((str(key), _hashable(item)) for key, item in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _check_format_fits_path(name: str, path: Path, fmt: str) -> None:
    if fmt not in SUPPORTED_FORMATS:
        raise DataError(DataProblem(
            name, f"unknown data format '{fmt}'; data.format must be one of {', '.join(SUPPORTED_FORMATS)}"
        ))
    if fmt == "hf" and not path.is_dir():
        raise DataError(DataProblem(name, "format hf needs a folder written by datasets' save_to_disk"))
    if fmt != "hf" and path.is_dir():
        raise DataError(DataProblem(name, f"is a folder, not a {fmt} file"))


def _decode(name: str, path: Path, encoding: str) -> str:
    """The file's text, decoded strictly: a wrong guess at the encoding must not become mojibake."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(DataProblem(
            name, f"unknown encoding '{encoding}'; set data.encoding to a Python codec name such as utf-8"
        )) from None
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].decode(encoding, errors="replace").count("\n") + 1
        raise DataError(DataProblem(
            name,
            f"cannot decode byte 0x{data[err.start]:02x} at byte offset {err.start} as {encoding}; "
            "set data.encoding to the file's encoding (for example latin-1 or cp1252)",
            line=line,
        )) from None
    return text.removeprefix("\ufeff")  # a BOM is not part of the first column's name


def _read_table(
    name: str, path: Path, fmt: str, encoding: str, split: str | None
) -> tuple[list[str], list[Record], list[DataProblem]]:
    """Column names, records and per-row problems of a tabular file."""
    if fmt in ("csv", "tsv"):
        return _read_delimited(name, _decode(name, path, encoding), fmt)
    if fmt == "jsonl":
        return _read_json(name, _decode(name, path, encoding))
    if fmt == "parquet":
        rows, columns = _load_parquet(name, path)
    else:
        rows, columns = _load_hf(name, path, split)
    return columns, [Record(row, None, values) for row, values in enumerate(rows, 1)], []


def _read_delimited(name: str, text: str, fmt: str) -> tuple[list[str], list[Record], list[DataProblem]]:
    # GLUE-style TSV never quotes: a '"' in a sentence is just a character.
    options: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    if fmt == "csv":
        options = {"strict": True}  # so an unclosed quote is an error, not a row swallowing the file
    reader = csv.reader(io.StringIO(text, newline=""), **options)
    header: list[str] | None = None
    records: list[Record] = []
    problems: list[DataProblem] = []
    row, start_line = 0, 1
    try:
        for fields in reader:
            # A quoted field can span lines, so a row starts just after where the previous one ended.
            line, start_line = start_line, reader.line_num + 1
            if not fields:
                continue  # blank line
            if header is None:
                header = _check_header(name, fields, line)
                continue
            row += 1
            if len(fields) != len(header):
                hint = "quote texts that contain a comma" if fmt == "csv" else "a text may contain a tab"
                problems.append(DataProblem(
                    name, f"expected {len(header)} fields as in the header, found {len(fields)} ({hint})",
                    row=row, line=line,
                ))
                continue
            records.append(Record(row, line, dict(zip(header, fields))))
    except csv.Error as err:
        raise DataError(_csv_problem(name, fmt, err, row + 1, start_line)) from None
    return header or [], records, problems


def _csv_problem(name: str, fmt: str, err: csv.Error, row: int, line: int) -> DataProblem:
    if "field limit" in str(err):
        # Python's csv module refuses cells over csv.field_size_limit() (131,072 characters by
        # default); the cap stays, because in csv an unclosed quote is the usual way to hit it.
        unclosed = " (or a quote opened here is never closed)" if fmt == "csv" else ""
        return DataProblem(name, (
            f"a cell is longer than {csv.field_size_limit():,} characters, the most a {fmt} cell may "
            f"hold{unclosed}; shorten the text (only data.max_length tokens are used) or store the "
            "data as JSON lines or Parquet, which have no cell limit"), row=row, line=line)
    hint = " (a quote opened here is never closed)" if "end of data" in str(err) else ""
    return DataProblem(name, f"cannot parse as {fmt}: {err}{hint}", line=line)


def _check_header(name: str, fields: list[str], line: int) -> list[str]:
    header = [column.strip() for column in fields]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise DataError(DataProblem(
            name, f"header names column(s) {', '.join(map(repr, repeated))} more than once", line=line
        ))
    return header


def _read_json(name: str, text: str) -> tuple[list[str], list[Record], list[DataProblem]]:
    """JSON lines, or a `.json` file that holds one array of objects."""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(DataProblem(name, f"not valid JSON: {err.msg}", line=err.lineno)) from None
        numbered = [(row, None, item) for row, item in enumerate(items, 1)]
    else:
        numbered = []
        for line, content in enumerate(text.split("\n"), 1):
            if content.strip():
                numbered.append((len(numbered) + 1, line, content))
    records: list[Record] = []
    problems: list[DataProblem] = []
    columns: dict[str, None] = {}  # keys in order of first appearance
    for row, line, item in numbered:
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except json.JSONDecodeError as err:
                problems.append(DataProblem(name, f"not valid JSON: {err.msg}", row=row, line=line))
                continue
        if not isinstance(item, dict):
            problems.append(DataProblem(
                name, f"expected a JSON object, found {type(item).__name__}", row=row, line=line
            ))
            continue
        columns.update(dict.fromkeys(item))
        records.append(Record(row, line, item))
    return list(columns), records, problems


def _load_parquet(name: str, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # pyarrow's errors derive from these
        raise DataError(DataProblem(name, f"cannot read as parquet: {err}")) from None
    return table.to_pylist(), list(table.column_names)


def _load_hf(name: str, path: Path, split: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    import datasets  # slow to import, and only this format needs it

    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as err:
        raise DataError(DataProblem(name, f"cannot load the saved dataset: {err}")) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            asked = "no split was named" if split is None else f"it has no split '{split}'"
            raise DataError(DataProblem(
                name,
                f"is a DatasetDict and {asked}; its splits are {', '.join(loaded)}. "
                f"Point at one split's folder (for example {path / next(iter(loaded), 'train')})",
            ))
        loaded = loaded[split]
    return loaded.to_list(), list(loaded.column_names)


def _check_columns(
    name: str, columns: list[str], text_column: str, label_column: str, require_labels: bool
) -> str | None:
    """The label column to read (None: the file has none and none is needed); stops if one is missing."""
    present = ", ".join(columns) if columns else "none"
    problems = []
    if text_column not in columns:
        problems.append(DataProblem(
            name, f"no text column (columns present: {present}); set data.text_column", field=text_column
        ))
    if require_labels and label_column not in columns:
        problems.append(DataProblem(
            name, f"no label column (columns present: {present}); set data.label_column", field=label_column
        ))
    if problems:
        raise DataError(problems)
    return label_column if label_column in columns else None

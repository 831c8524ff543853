"""Label a file of any size with a trained run: read in chunks, written as it goes, resumable.

Two passes over the input. The first only reads: it counts rows (for the progress bar) and checks
every text, so a bad row stops the job before any model time is spent, with every problem listed.
The second predicts `chunk_rows` rows at a time and appends them through the resumable writer
(resumable_output.py, shared with `paretune generate`): OUTPUT.partial, flushed after each chunk,
stamped with what it is a prediction of, locked against a second job. Run the same command again
after a crash and it continues after the last complete line. OUTPUT itself appears only when every
row is done (an atomic rename), so it is never half-written.

Rows stream from csv, tsv, JSON lines, parquet (by record batch), CoNLL and saved `datasets`
folders; only a `.json` file holding one JSON array is read whole.
"""
from __future__ import annotations

import codecs
import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from paretune.data.readers import infer_format
from paretune.errors import DataError, DataProblem
from paretune.resumable_output import ResumableOutput, check_output, exit_on_sigterm, input_stamp

log = logging.getLogger("paretune")

CHUNK_ROWS = 512


@dataclass
class InputRow:
    row: int  # 1-based data row (CoNLL: sentence number), as in training-data errors
    text: str | list[str]


@dataclass
class BatchResult:
    output: Path
    rows: int
    resumed_after: int  # rows found done in a partial output


def predict_file(predictor, input: Path, output: Path, *, fmt: str | None = None, text_column: str = "text",
                 encoding: str = "utf-8", all_scores: bool = False, batch_size: int = 64,
                 chunk_rows: int = CHUNK_ROWS, restart: bool = False, overwrite: bool = False) -> BatchResult:
    """Write one JSON line per input row to `output`: {"row", "text", **prediction}."""
    input, output = Path(input), Path(output)
    check_output(input, output, overwrite)
    fmt = fmt or infer_format(input)
    source = RowSource(input, fmt, text_column, predictor.task.word_level, encoding)
    total = source.check()
    stamp = {**input_stamp(input), "run": str(Path(predictor.run_dir).resolve()),
             "format": fmt, "text_column": text_column, "all_scores": all_scores}
    with ResumableOutput(output, stamp, rows=total, restart=restart, command="paretune predict") as out, \
            exit_on_sigterm(out.partial):
        _predict_rows(predictor, source.rows(skip=out.done), out, total, all_scores, batch_size, chunk_rows)
        out.finish()
        return BatchResult(output, total, out.done)


def predict_listed(predictor, examples, input: Path, output: Path, *, all_scores: bool = False,
                   batch_size: int = 64, overwrite: bool = False) -> BatchResult:
    """Inputs the task read itself (an image folder or list): {"row", "input", **prediction} per line,
    written in chunks to a partial file that replaces `output` once all are done."""
    input, output = Path(input), Path(output)
    check_output(input, output, overwrite)
    stamp = {**input_stamp(input), "run": str(Path(predictor.run_dir).resolve()), "all_scores": all_scores}
    with ResumableOutput(output, stamp, rows=len(examples), row_of=lambda k: examples[k - 1].row,
                         command="paretune predict") as out, exit_on_sigterm(out.partial):
        for start in range(out.done, len(examples), CHUNK_ROWS):
            chunk = examples[start:start + CHUNK_ROWS]
            predictions = predictor.predict_examples(chunk, all_scores, batch_size)
            out.write({"row": ex.row, "input": ex.text if isinstance(ex.text, str) else f"row {ex.row}",
                       **prediction} for ex, prediction in zip(chunk, predictions))
        out.finish()
        return BatchResult(output, len(examples), out.done)


def _predict_rows(predictor, rows: Iterator[InputRow], out: ResumableOutput, total: int, all_scores: bool,
                  batch_size: int, chunk_rows: int) -> None:
    with tqdm(total=total, initial=out.done, unit="row", disable=None) as bar:
        chunk: list[InputRow] = []
        for item in rows:
            chunk.append(item)
            if len(chunk) == chunk_rows:
                _write_chunk(predictor, chunk, out, all_scores, batch_size)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            _write_chunk(predictor, chunk, out, all_scores, batch_size)
            bar.update(len(chunk))


def _write_chunk(predictor, chunk: list[InputRow], out: ResumableOutput, all_scores: bool, batch_size: int) -> None:
    predictions = predictor.predict([item.text for item in chunk], all_scores=all_scores, batch_size=batch_size)
    out.write({"row": item.row, "text": item.text, **prediction} for item, prediction in zip(chunk, predictions))


class RowSource:
    """The texts of a prediction input file, one InputRow at a time, in file order."""

    def __init__(self, path: Path, fmt: str, text_column: str, word_level: bool, encoding: str):
        self.path, self.name, self.fmt = path, str(path), fmt
        self.text_column, self.word_level, self.encoding = text_column, word_level, encoding
        if not path.exists():
            raise DataError(DataProblem(self.name, "file not found"))
        if fmt not in _READERS:
            known = ", ".join(_READERS)
            raise DataError(DataProblem(self.name, f"unknown format '{fmt}'; use one of {known}"))
        try:
            codecs.lookup(encoding)
        except LookupError:
            message = f"unknown encoding '{encoding}'; set the run's data.encoding to a Python codec name"
            raise DataError(DataProblem(self.name, message)) from None

    def check(self) -> int:
        """Number of rows; raises one DataError listing every bad row."""
        count, problems = 0, []
        for item in self._items():
            if isinstance(item, DataProblem):
                problems.append(item)
            else:
                count += 1
        if problems:
            raise DataError(problems)
        if count == 0:
            raise DataError(DataProblem(self.name, "holds no rows to predict"))
        return count

    def rows(self, skip: int = 0) -> Iterator[InputRow]:
        for index, item in enumerate(self._items()):
            if isinstance(item, DataProblem):  # the file changed since check()
                raise DataError(item)
            if index >= skip:
                yield item

    def _items(self) -> Iterator[InputRow | DataProblem]:
        try:
            for row, value in _READERS[self.fmt](self):
                yield value if isinstance(value, DataProblem) else self._text(row, value)
        except UnicodeDecodeError as err:
            raise DataError(DataProblem(self.name, f"cannot decode as {self.encoding} ({err.reason}); "
                                        "set data.encoding to the file's encoding")) from None
        except csv.Error as err:
            raise DataError(DataProblem(self.name, f"cannot parse as {self.fmt}: {err}")) from None

    def _text(self, row: int, value: Any) -> InputRow | DataProblem:
        if isinstance(value, list) and self.word_level and value and all(
                isinstance(w, str) and w.strip() for w in value):
            return InputRow(row, value)  # pre-split words (NER)
        if isinstance(value, list) and value and all(isinstance(w, str) for w in value):
            value = " ".join(value)
        if not isinstance(value, str):
            kind = "missing" if value is None else f"a {type(value).__name__}"
            return self._problem(row, f"expected a text, found {kind}")
        if not value.strip():
            return self._problem(row, "text is empty")
        return InputRow(row, value)  # raw text: NER answers carry character offsets into it

    def _problem(self, row: int, message: str) -> DataProblem:
        return DataProblem(self.name, message, row=row, field=self.text_column)

    def _open(self):
        # utf-8-sig: a byte-order mark is not part of the first column's name.
        return open(self.path, encoding="utf-8-sig" if self.encoding == "utf-8" else self.encoding,
                    newline="" if self.fmt in ("csv", "tsv") else None)

    def _missing_column(self, columns: list[str]) -> DataError:
        present = ", ".join(columns) or "none"
        message = f"no text column (columns present: {present}); pass --text-column"
        return DataError(DataProblem(self.name, message, field=self.text_column))


def _read_delimited(src: RowSource) -> Iterator[tuple[int, Any]]:
    # As in training data: GLUE-style TSV never quotes; CSV quotes strictly.
    options = {"strict": True} if src.fmt == "csv" else {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    with src._open() as f:
        reader, header, row = csv.reader(f, **options), None, 0
        for fields in reader:
            if not fields:
                continue
            if header is None:
                header = [column.strip() for column in fields]
                if src.text_column not in header:
                    raise src._missing_column(header)
                column = header.index(src.text_column)
                continue
            row += 1
            if len(fields) != len(header):
                yield row, DataProblem(src.name, f"expected {len(header)} fields as in the header, found "
                                       f"{len(fields)}", row=row, line=reader.line_num)
            else:
                yield row, fields[column]


def _read_json(src: RowSource) -> Iterator[tuple[int, Any]]:
    with src._open() as f:
        first = f.read(1)
        while first.isspace():
            first = f.read(1)
        if first == "[":  # one JSON array: cannot be streamed
            f.seek(0)
            try:
                items = json.load(f)
            except json.JSONDecodeError as err:
                problem = DataProblem(src.name, f"not valid JSON: {err.msg}", line=err.lineno)
                raise DataError(problem) from None
            lines = ((None, item) for item in items)
        else:
            f.seek(0)
            lines = ((number, line) for number, line in enumerate(f, 1) if line.strip())
        for row, (number, item) in enumerate(lines, 1):
            if number is not None:
                try:
                    item = json.loads(item)
                except json.JSONDecodeError as err:
                    yield row, DataProblem(src.name, f"not valid JSON: {err.msg}", row=row, line=number)
                    continue
            if not isinstance(item, dict):
                yield row, DataProblem(src.name, f"expected a JSON object, found {type(item).__name__}",
                                       row=row, line=number)
            else:
                yield row, item.get(src.text_column)


def _read_parquet(src: RowSource) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(src.path)
    except (OSError, ValueError) as err:
        raise DataError(DataProblem(src.name, f"cannot read as parquet: {err}")) from None
    if src.text_column not in table.schema_arrow.names:
        raise src._missing_column(table.schema_arrow.names)
    row = 0
    for batch in table.iter_batches(batch_size=CHUNK_ROWS, columns=[src.text_column]):
        for value in batch.column(0).to_pylist():
            row += 1
            yield row, value


def _read_hf(src: RowSource) -> Iterator[tuple[int, Any]]:
    import datasets

    loaded = datasets.load_from_disk(str(src.path))  # memory-mapped: rows are read as iterated
    if isinstance(loaded, datasets.DatasetDict):
        raise DataError(DataProblem(src.name, f"is a DatasetDict; point at one split's folder "
                                    f"(splits: {', '.join(loaded)})"))
    if src.text_column not in loaded.column_names:
        raise src._missing_column(loaded.column_names)
    for row, record in enumerate(loaded.select_columns([src.text_column]), 1):
        yield row, record[src.text_column]


def _read_conll(src: RowSource) -> Iterator[tuple[int, Any]]:
    """One `word ...` line per token (any tag column is ignored), blank lines between sentences."""
    row, words = 0, []
    with src._open() as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] != "-DOCSTART-":
                words.append(fields[0])
            elif words:
                row += 1
                yield row, words
                words = []
    if words:
        yield row + 1, words


_READERS = {"csv": _read_delimited, "tsv": _read_delimited, "jsonl": _read_json,
            "parquet": _read_parquet, "hf": _read_hf, "conll": _read_conll}

"""Label a file of any size with a trained run: read in chunks, written as it goes, resumable.

Two passes over the input. The first only reads: it counts rows (for the progress bar) and checks
every text, so a bad row stops the job before any model time is spent, with every problem listed.
The second predicts `chunk_rows` rows at a time and appends them to OUTPUT.partial, flushed to disk
after each chunk; OUTPUT.partial.json records what the partial file is a prediction of (input size
and modification time, run, options). Run the same command again after a crash and it continues
after the last complete line. OUTPUT itself appears only when every row is done (an atomic rename),
so it is never half-written.

Rows stream from csv, tsv, JSON lines, parquet (by record batch), CoNLL and saved `datasets`
folders; only a `.json` file holding one JSON array is read whole.
"""
from __future__ import annotations

import codecs
import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from paretune.data.readers import infer_format
from paretune.errors import DataError, DataProblem, ParetuneError
from paretune.run_folder import atomic_write

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
    partial = output.with_name(output.name + ".partial")
    state_file = output.with_name(output.name + ".partial.json")
    stamp = {"input": str(input.resolve()), **_stamp(input), "run": str(Path(predictor.run_dir).resolve()),
             "format": fmt, "text_column": text_column, "all_scores": all_scores, "rows": total}
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "a", encoding="utf-8") as out:  # "a": create, but never clobber before the lock
        _lock(out, partial)
        done = 0 if restart else _resume_point(partial, state_file, stamp)
        if done == 0:
            out.truncate(0)
            atomic_write(state_file, json.dumps(stamp, indent=2) + "\n")
        else:
            log.info("%s: %d of %d rows already predicted; continuing", partial, done, total)
        _predict_rows(predictor, source.rows(skip=done), out, total, done, all_scores, batch_size, chunk_rows)
        os.replace(partial, output)  # still under the lock: no second job can start on it meanwhile
        state_file.unlink(missing_ok=True)
    return BatchResult(output, total, done)


def predict_listed(predictor, examples, input: Path, output: Path, *, all_scores: bool = False,
                   batch_size: int = 64, overwrite: bool = False) -> BatchResult:
    """Inputs the task read itself (an image folder or list): {"row", "input", **prediction} per line,
    written in chunks to a partial file that replaces `output` once all are done."""
    input, output = Path(input), Path(output)
    check_output(input, output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with open(partial, "w", encoding="utf-8") as out:
        for start in range(0, len(examples), CHUNK_ROWS):
            chunk = examples[start:start + CHUNK_ROWS]
            for ex, prediction in zip(chunk, predictor.predict_examples(chunk, all_scores, batch_size)):
                where = ex.text if isinstance(ex.text, str) else f"row {ex.row}"
                out.write(json.dumps({"row": ex.row, "input": where, **prediction}, ensure_ascii=False) + "\n")
    os.replace(partial, output)
    return BatchResult(output, len(examples), 0)


def check_output(input: Path, output: Path, overwrite: bool) -> None:
    """Refuse an output that would replace something the user had, before any work is done.

    The finished file replaces `output` atomically, so a mistyped `--output train.csv` would lose
    that file. Replacing is allowed for earlier predictions of ours (a rerun), or with --overwrite.
    """
    if output.is_dir():
        raise ParetuneError(f"--output {output} is a folder: name a file, e.g. {output / 'predictions.jsonl'}")
    if not output.exists():
        return
    if output.resolve() == input.resolve():
        raise ParetuneError(f"--output {output} is the input file: predictions would replace it; "
                            "choose another --output")
    if not overwrite and not _is_predictions_file(output):
        raise ParetuneError(f"--output {output} already exists and does not hold paretune predictions: "
                            "choose another --output, or pass --overwrite to replace it")


def _is_predictions_file(path: Path) -> bool:
    """Whether `path` looks like our own output: empty, or JSON lines whose first has a "row"."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        return not first.strip() or "row" in json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return False


def _predict_rows(predictor, rows: Iterator[InputRow], out, total: int, done: int, all_scores: bool,
                  batch_size: int, chunk_rows: int) -> None:
    with tqdm(total=total, initial=done, unit="row", disable=None) as bar:
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


def _write_chunk(predictor, chunk: list[InputRow], out, all_scores: bool, batch_size: int) -> None:
    texts = [item.text for item in chunk]
    predictions = predictor.predict(texts, all_scores=all_scores, batch_size=batch_size)
    lines = (json.dumps({"row": item.row, "text": item.text, **prediction}, ensure_ascii=False) + "\n"
             for item, prediction in zip(chunk, predictions))
    out.write("".join(lines))
    out.flush()
    os.fsync(out.fileno())  # a chunk on disk is a chunk a resumed job need not redo


def _lock(file, path: Path) -> None:
    """Two jobs appending to one partial file would interleave rows: let only one hold it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; resuming still works
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ParetuneError(f"another `paretune predict` is writing {path}; "
                            "wait for it to finish or choose another --output") from None


def _stamp(path: Path) -> dict[str, int]:
    """Size and newest modification time: a changed input must not be resumed into."""
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return {"size": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


def _resume_point(partial: Path, state_file: Path, stamp: dict[str, Any]) -> int:
    """Rows already in `partial` for this very input and options (0: start over).

    A crash can leave half a line at the end: it is cut off, and its row predicted again.
    """
    if not (partial.is_file() and state_file.is_file()):
        return 0
    try:
        saved = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if saved != stamp:
        log.warning("%s was written for another input, run or options; starting over", partial)
        return 0
    done, kept, last = 0, 0, b""
    with open(partial, "rb") as f:
        for line in f:  # streams: the partial file can be as large as the output
            if not line.endswith(b"\n"):
                break
            done, kept, last = done + 1, kept + len(line), line
    try:
        consistent = done == 0 or json.loads(last)["row"] == done
    except (ValueError, KeyError, TypeError):
        consistent = False
    if not consistent:
        log.warning("%s does not end where its rows say; starting over", partial)
        return 0
    os.truncate(partial, kept)
    return done


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

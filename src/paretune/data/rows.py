"""Records (one dict per row, from any tabular format) into Examples, every problem collected.

The rules about empty text, missing labels, word lists and tags are written here once for csv,
tsv, JSON lines, Parquet and saved datasets. One label conversion is made here: a Parquet/Arrow
binary label holding UTF-8 text is that text (b"0" is the class "0", not "b'0'"); binary data that
is no text is an error, and so is JSON true/false among numeric labels (True would become a class
of its own beside 1). Nothing else changes type.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from paretune.data.examples import Example
from paretune.data.tags import tag_problem
from paretune.errors import DataProblem


# Compared case-insensitively after stripping. These are the texts that pandas, R, Excel and
# hand-edited files use for "no value"; none of them is a plausible class name by accident.
MISSING_MARKERS = frozenset({"nan", "none", "null", "na", "n/a", "#n/a", "nil", "-", "?", '""', "''"})


def is_missing_marker(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in MISSING_MARKERS


@dataclass
class Record:
    row: int
    line: int | None
    values: dict[str, Any]


@dataclass
class RowChecker:
    """Turns records into Examples, collecting every problem instead of stopping at the first."""

    file: str
    text_column: str
    label_column: str | None
    word_level: bool
    require_labels: bool
    tag_scheme: str = "auto"
    problems: list[DataProblem] = field(default_factory=list)

    def example(self, record: Record) -> Example | None:
        found_before = len(self.problems)
        text = self._text(record)
        label = self._label(record)
        if len(self.problems) > found_before:
            return None
        if self.word_level and label is not None and len(label) != len(text):
            message = f"{len(text)} words but {len(label)} tags; each word needs one tag"
            self._problem(record, self.label_column, message)
            return None
        return Example(text, label, record.row, record.line)

    def _problem(self, record: Record, column: str | None, message: str) -> None:
        self.problems.append(DataProblem(self.file, message, row=record.row, field=column, line=record.line))

    def _text(self, record: Record) -> Any:
        value = record.values.get(self.text_column)
        if self.word_level and isinstance(value, str):
            value = value.split()
        if _is_missing(value) or value == []:
            self._problem(record, self.text_column, "text is empty")
        elif self.word_level and not _is_list_of(value, str):
            self._problem(record, self.text_column, "expected a list of words or a space-separated string")
        elif self.word_level and not all(word.strip() for word in value):
            self._problem(record, self.text_column, "a word is empty; a token needs at least one character")
        elif not self.word_level and not isinstance(value, str):
            # Not turned into text: a number or list here nearly always means the wrong column.
            found = f"{type(value).__name__} {_short(value)}"
            message = f"expected a string, found {found}; is data.text_column right?"
            self._problem(record, self.text_column, message)
        return value

    def _label(self, record: Record) -> Any:
        value = None if self.label_column is None else record.values.get(self.label_column)
        if _is_missing(value):
            if self.require_labels:
                self._problem(record, self.label_column, "label is missing")
            return None
        if isinstance(value, bytes):  # Parquet/Arrow binary columns: the text they hold
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                self._problem(record, self.label_column, f"label is binary data {_short(value)}, not text; "
                              "store labels as text or numbers")
                return None
        if self.word_level:
            if isinstance(value, str):
                value = value.split()
            if not _is_list_of(value, (str, int)):
                message = "expected a list of tags or a space-separated string"
                self._problem(record, self.label_column, message)
            else:
                for word, tag in enumerate(value, 1):
                    if problem := tag_problem(tag, self.tag_scheme):
                        self._problem(record, self.label_column, f"word {word}: {problem}")
        return value


def mixed_label_problems(file: str, field: str | None, examples: list[Example]) -> list[DataProblem]:
    """JSON true/false among numeric labels: one problem per such row (True == 1 in Python, but as a
    class it is "True", a class of its own beside "1")."""
    labels = [ex.label for ex in examples]
    if not any(isinstance(v, bool) for v in labels) or not any(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        return []
    return [DataProblem(file, f"label {str(ex.label).lower()} (a JSON boolean) among numeric labels: it would be "
                        f"a class of its own, not {int(ex.label)}; write {int(ex.label)}, or true/false in "
                        "every row", row=ex.row, field=field, line=ex.line)
            for ex in examples if isinstance(ex.label, bool)]


def marker_label_problems(file: str, field: str | None, examples: list[Example]) -> list[DataProblem]:
    """Labels that are missing-value markers (`NaN`, `None`, `NA`, ...), said while reading when other
    problems stop the read anyway: the task's own check (which knows task.labels) would only report
    them on the next run."""
    return [DataProblem(file, f"label {ex.label!r} marks a missing value, not a class; fill in the label or "
                        "drop the row (if it is a real class, list it in task.labels)", row=ex.row, field=field,
                        line=ex.line) for ex in examples if is_missing_marker(ex.label)]


def _is_missing(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and not value.strip())


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_list_of(value: Any, kinds: type | tuple[type, ...]) -> bool:
    # bool is an int subclass, but True is never a word or a tag
    return isinstance(value, list) and all(
        isinstance(item, kinds) and not isinstance(item, bool) for item in value
    )

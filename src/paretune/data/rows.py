"""Records (one dict per row, from any tabular format) into Examples, every problem collected.

The rules about empty text, missing labels, word lists and tags are written here once for csv,
tsv, JSON lines, Parquet and saved datasets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from paretune.data.examples import Example
from paretune.data.tags import tag_problem
from paretune.errors import DataProblem


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

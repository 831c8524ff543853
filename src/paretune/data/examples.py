"""The one in-memory form of a labelled example, whatever file it came from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Example:
    """One example as read from a data file, before any task-specific parsing.

    `text` is a string for sequence tasks and a list of words for token tasks (NER).
    `label` is the raw label as stored (string, number, list of strings, list of tags) or None
    when the file has no label column (prediction input). `row` is the 1-based data row
    (for CoNLL, the sentence number) and `line` the 1-based line in the file where known;
    both exist so every later error can point at the source.
    """

    text: str | list[str]
    label: Any
    row: int
    line: int | None = None
    # Character span of each word in the original text, when words were split from raw text
    # at prediction time; lets NER answers point at characters, not just word indices.
    offsets: list[tuple[int, int]] | None = None

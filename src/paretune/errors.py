"""Errors a user can act on.

Every error paretune raises for bad input names where the problem is (file, row, field) so the
user can fix it without reading a traceback. The CLI prints these without a stack trace and exits
with code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from dataclasses import dataclass


class ParetuneError(Exception):
    """Base class for errors caused by user input or environment, not by a bug."""


class ConfigError(ParetuneError):
    """The YAML config or a --set override is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name looked up in a registry (a method, ...) that is not registered. Still a KeyError
    for code that looks names up, but worded for the user: str() without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DataProblem:
    """One problem in one place of a data file."""

    file: str
    message: str
    row: int | None = None  # 1-based data row (CoNLL: sentence number)
    field: str | None = None
    line: int | None = None  # 1-based line in the file, where known

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}"


class DataError(ParetuneError):
    """One or more problems found in the data; all are reported together."""

    max_shown = 20

    def __init__(self, problems: list[DataProblem] | DataProblem):
        self.problems = [problems] if isinstance(problems, DataProblem) else list(problems)
        shown = [f"  - {p}" for p in self.problems[: self.max_shown]]
        hidden = len(self.problems) - len(shown)
        if hidden > 0:
            shown.append(f"  ... and {hidden} more")
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{len(self.problems)} data {noun}:\n" + "\n".join(shown))


class TrainingError(ParetuneError):
    """Training cannot go on (repeated non-finite loss, nothing to resume, ...)."""

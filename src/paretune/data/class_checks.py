"""Checks on how the training examples spread over the classes.

A class seen once in training can hardly be learned and, held out, leaves training without it;
both are legal but rarely what the user meant, so the first is a warning naming the class and
its row, and the second (which only a held-out split can cause) is an error saying what to do.
Class names come from `Task.check_raw`, so classification and multilabel count the same way and
tasks without classes (regression, NER) are skipped.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from paretune.data.examples import Example
from paretune.errors import DataError, DataProblem
from paretune.tasks import Task

log = logging.getLogger("paretune.data")
_SHOWN = 5


def warn_single_example_classes(task: Task, examples: list[Example], file: str, field: str) -> list[str]:
    """Log one warning naming each class with a single training example; return those classes."""
    rows: dict[str, list[int]] = {}
    for example, classes in _classes(task, examples):
        for name in classes:
            rows.setdefault(name, []).append(example.row)
    single = {name: found[0] for name, found in rows.items() if len(found) == 1}
    if single:
        shown = ", ".join(f"{name!r} (row {row})" for name, row in list(single.items())[:_SHOWN])
        more = f" and {len(single) - _SHOWN} more" if len(single) > _SHOWN else ""
        log.warning(
            "%s, field '%s': %d class(es) have a single training example: %s%s; the model can hardly "
            "learn them and validation cannot score them; add examples or merge the classes",
            file, field, len(single), shown, more,
        )
    return list(single)


def check_held_out_classes(
    task: Task, train: list[Example], held_out: list[Example], file: str, field: str
) -> None:
    """Fail when the held-out split took every example of a class, so training never sees it.

    With task.labels declared the class is still a known label, so this only warns then.
    """
    seen = {name for _, classes in _classes(task, train) for name in classes}
    problems = [
        DataProblem(
            file,
            f"class {name!r} has no example left in training: the held-out validation split took "
            f"its only example(s); add examples of {name!r} or give a validation file (data.validation)",
            row=example.row, field=field, line=example.line,
        )
        for example, classes in _classes(task, held_out)
        for name in dict.fromkeys(classes)
        if name not in seen
    ]
    if problems and task.config.labels:
        for problem in problems[:_SHOWN]:
            log.warning("%s", problem)
    elif problems:
        raise DataError(problems)


def _classes(task: Task, examples: list[Example]) -> Iterable[tuple[Example, list[str]]]:
    for example in examples:
        try:
            yield example, task.check_raw(example.label)
        except ValueError:
            continue  # a bad label is reported by Task.parse, with its own message

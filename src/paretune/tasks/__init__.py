"""Tasks: one module each, registered here by one line.

A task is a pydantic options model (its `type` field picks it in the `task:` section of a run
config) and a `Task` subclass that owns encoding, collation, head, loss, metrics and the facts other
packages ask about (tasks/base.py). Adding a task never edits the training loop, the config schema
or data preparation: a module here and one line in TASKS, or `register_task` from outside the
package (a plugin, a test).
"""
from __future__ import annotations

from typing import Any, Callable

from paretune.data.encoded import Encoded
from paretune.tasks.base import Task, TaskOptions
from paretune.tasks.classification import ClassificationTask
from paretune.tasks.generation import GenerationTask
from paretune.tasks.image_classification import ImageClassificationTask
from paretune.tasks.image_multilabel import ImageMultilabelTask
from paretune.tasks.kg_completion import KgCompletionTask
from paretune.tasks.mlm import MlmTask
from paretune.tasks.multilabel import MultilabelTask
from paretune.tasks.ner import NerTask
from paretune.tasks.preference import PreferenceTask
from paretune.tasks.regression import RegressionTask

# The registry. Order matters only for the default: the first entry is used when `task.type` is omitted.
TASKS: dict[str, type[Task]] = {
    t.name: t for t in (ClassificationTask, MultilabelTask, RegressionTask, NerTask, GenerationTask,
                        ImageClassificationTask, ImageMultilabelTask, MlmTask, PreferenceTask, KgCompletionTask)
}

# Called after the registry changes: the run config's `task:` union is rebuilt this way, so this
# layer never imports the config layer above it.
_listeners: list[Callable[[], None]] = []


def task_class(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task type '{name}'; available: {', '.join(TASKS)}") from None


def task_options_types() -> tuple[type[TaskOptions], ...]:
    return tuple(t.options for t in TASKS.values())


def default_task() -> str:
    return next(iter(TASKS))


def task_options(values: dict[str, Any] | None = None) -> TaskOptions:
    """A `task:` section as its task's options (`type` defaults to the first registered task)."""
    values = dict(values or {})
    return task_class(values.get("type", default_task())).options.model_validate(values)


def register_task(task: type[Task]) -> type[Task]:
    """Make a task available to configs, training and prediction (usable as a class decorator)."""
    declared = task.options.model_fields.get("type")
    if declared is None or declared.default != task.name:
        raise ValueError(f"{task.__name__}.options needs `type: Literal['{task.name}'] = '{task.name}'`")
    TASKS[task.name] = task
    for listener in _listeners:
        listener()
    return task


def unregister_task(name: str) -> None:
    TASKS.pop(name, None)
    for listener in _listeners:
        listener()


def on_registry_change(listener: Callable[[], None]) -> None:
    _listeners.append(listener)


__all__ = ["Encoded", "Task", "TaskOptions", "TASKS", "register_task", "task_class", "task_options",
           "task_options_types", "unregister_task"]

"""Tasks: one module each, registered here by one line."""
from __future__ import annotations

from paretune.tasks.base import Encoded, Task
from paretune.tasks.classification import ClassificationTask
from paretune.tasks.multilabel import MultilabelTask
from paretune.tasks.ner import NerTask
from paretune.tasks.regression import RegressionTask

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (ClassificationTask, MultilabelTask, RegressionTask, NerTask)
}


def task_class(name: str) -> type[Task]:
    return TASKS[name]


__all__ = ["Encoded", "Task", "TASKS", "task_class"]

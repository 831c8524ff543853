"""The rows an audit looks at: a run config's data files read with the run's own readers.

Rows keep the file and the 1-based data row the reader gave them (header excluded), so every
finding points at a place the user can open. Nothing is split off: with no validation file the
audit still looks at every training row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paretune.config.schema import Config
from paretune.data.examples import Example
from paretune.data.prepare import read_split
from paretune.data.readers import infer_format
from paretune.tasks import Task, task_class

SPLITS = ("train", "validation", "test")


@dataclass
class SplitRows:
    """One data file's rows: examples as read, their parsed targets and their text as one string."""

    split: str
    file: str
    fmt: str
    examples: list[Example]
    targets: list[Any]

    @property
    def texts(self) -> list[str]:
        # Word-level rows (NER) are compared and embedded as their words joined by spaces.
        return [ex.text if isinstance(ex.text, str) else " ".join(ex.text) for ex in self.examples]

    def where(self, index: int) -> dict[str, Any]:
        """The place of row `index` as the report names it."""
        return {"file": self.file, "row": self.examples[index].row, "split": self.split}


@dataclass
class AuditData:
    task: Task
    splits: dict[str, SplitRows]

    @property
    def train(self) -> SplitRows:
        return self.splits["train"]

    @property
    def single_label(self) -> bool:
        """Whether targets are one class index per row, the case confident learning handles."""
        targets = self.train.targets
        return bool(self.task.label_names) and all(isinstance(t, int) for t in targets)


def read_audit_data(config: Config) -> AuditData:
    """Every data file the config names, read and label-checked as training would read them."""
    task_cls = task_class(config.task.type)
    data = config.data
    files = {split: getattr(data, split) for split in SPLITS if getattr(data, split)}
    examples = {split: read_split(config, split, path) for split, path in files.items()}
    if data.max_train_rows:
        examples["train"] = examples["train"][: data.max_train_rows]
    task = task_cls(config.task, task_cls.infer_labels(examples["train"], config.task))
    splits = {}
    for split, path in files.items():
        fmt = data.format or infer_format(path)
        targets = task.parse(examples[split], path, data.label_column)
        splits[split] = SplitRows(split, path, fmt, examples[split], targets)
    return AuditData(task, splits)

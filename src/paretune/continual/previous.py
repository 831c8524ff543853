"""The finished run a continual run starts from: its config, labels and model, head included."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from paretune.config.schema import Config
from paretune.errors import ParetuneError
from paretune.remote_code import trust_for_run
from paretune.run_folder import TASK_FILE, RunFolder
from paretune.stored import form_of, load_model
from paretune.tasks.base import Task

LINEAGE_FILE = "lineage.json"
_HEAD_NAMES = ("classifier", "score", "out_proj")


@dataclass
class PreviousRun:
    run: RunFolder
    config: Config
    info: dict[str, Any]  # model/paretune.json: task, labels, max_length, method, form
    trust_remote_code: bool = False

    @classmethod
    def open(cls, run_dir: str | Path, trust_remote_code: bool = False) -> "PreviousRun":
        run = RunFolder.open(run_dir)
        if not run.is_finished() or not (run.model_dir / TASK_FILE).is_file():
            raise ParetuneError(f"--from {run_dir}: not a finished run (no metrics.json or model/{TASK_FILE})")
        config = run.read_config()
        info = json.loads((run.model_dir / TASK_FILE).read_text())
        return cls(run, config, info, trust_for_run(run.path, config, trust_remote_code))

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def labels(self) -> list[str]:
        return list(self.info.get("labels") or [])

    def lineage(self) -> list[dict[str, Any]]:
        """The runs this one descends from, oldest first, ending with itself."""
        file = self.path / LINEAGE_FILE
        earlier = json.loads(file.read_text()).get("chain", []) if file.is_file() else []
        return [*earlier, {"run": str(self.path), "data": self.config.data.train, "labels": self.labels}]

    def load_model(self, task: Task) -> torch.nn.Module:
        """The old model with its head; outputs for labels it never had are added at the end."""
        form = form_of(self.run.model_dir)
        if form.over_base or not form.compressible:
            raise ParetuneError(f"--from {self.path}: its model is stored as {form.name}; continue from a run "
                                "trained in fp32 (full, freeze, LoRA, AdaLoRA or IA3)")
        model = load_model(self.run.model_dir, getattr(transformers, task.auto_model),
                           trust_remote_code=self.trust_remote_code).float()
        added = task.label_names[len(self.labels):]
        if task.label_names[: len(self.labels)] != self.labels:
            raise ParetuneError(f"labels {task.label_names} do not start with {self.path}'s {self.labels}")
        if added:
            grow_head(model, len(self.labels), len(task.label_names))
            model.config.update({"id2label": dict(enumerate(task.label_names)),
                                 "label2id": dict(task.label_to_id), "num_labels": len(task.label_names)})
        return model


def grow_head(model: torch.nn.Module, old: int, new: int) -> None:
    """Widen the output layer from `old` to `new` labels, keeping the old rows' weights exactly."""
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and m.out_features == old and name.split(".")[-1] in _HEAD_NAMES]
    if not found:
        raise ParetuneError(f"cannot find the model's {old}-output head to add labels to")
    name, head = found[-1]
    wider = torch.nn.Linear(head.in_features, new, bias=head.bias is not None)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        wider.weight.normal_(0.0, std)
        wider.weight[:old] = head.weight
        if head.bias is not None:
            wider.bias.zero_()
            wider.bias[:old] = head.bias
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.split(".")[-1], wider)

"""The finished run a compression or distillation starts from: its config, task, data and model."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import transformers

from paretune.config.schema import Config
from paretune.data.prepare import PreparedData, prepare_data
from paretune.errors import ParetuneError
from paretune.remote_code import trust_for_run
from paretune.run_folder import TASK_FILE, RunFolder
from paretune.stored import form_of, load_model
from paretune.tasks import task_class


@dataclass
class Parent:
    run: RunFolder
    config: Config
    info: dict[str, Any]  # model/paretune.json: task, labels, max_length, method, form
    trust_remote_code: bool = False  # the caller's choice, never config.yaml's (paretune/remote_code.py)

    @classmethod
    def open(cls, run_dir: str | Path, trust_remote_code: bool = False) -> "Parent":
        run = RunFolder.open(run_dir)
        if not run.is_finished() or not (run.model_dir / TASK_FILE).is_file():
            raise ParetuneError(f"{run_dir} has not finished (no metrics.json or model/{TASK_FILE}): "
                                "compress or distill from a finished run")
        info = json.loads((run.model_dir / TASK_FILE).read_text())
        config = run.read_config()
        trust = trust_for_run(run.path, config, trust_remote_code)
        return cls(run=run, config=config, info=info, trust_remote_code=trust)

    @property
    def path(self) -> Path:
        return self.run.path

    @cached_property
    def tokenizer(self):
        task = task_class(self.config.task.type)  # a text model's tokenizer, an image model's preprocessing
        return task.load_preprocessor(str(self.run.model_dir), self.config.task,
                                      trust_remote_code=self.trust_remote_code)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    @cached_property
    def data(self) -> PreparedData:
        """The parent's train/validation/test data, read and encoded as its training did."""
        data = prepare_data(self.config, self.tokenizer)
        if data.task.label_names != self.info["labels"]:
            raise ParetuneError(
                f"the data of {self.path} (config.yaml data.*) now gives labels {data.task.label_names}, "
                f"but the model was trained on {self.info['labels']}: restore the data files first")
        return data

    def load_model(self) -> torch.nn.Module:
        """A fresh fp32 PyTorch copy of the parent's model (each call loads again)."""
        form = form_of(self.run.model_dir)
        if form.over_base:
            raise ParetuneError(f"{self.path} trained a {self.info.get('method')} adapter that cannot be "
                                "folded into the weights; compress a full, freeze, LoRA, AdaLoRA or IA3 run")
        if not form.compressible:
            raise ParetuneError(f"{self.path} holds a {form.name} model; compress its parent (or another "
                                "fp32 run) instead: int8, ONNX and 16-bit forms do not compress further")
        auto_class = getattr(transformers, self.data.task.auto_model)
        model = load_model(self.run.model_dir, auto_class, trust_remote_code=self.trust_remote_code)
        return model.float().eval()

    def read_json(self, name: str) -> dict[str, Any]:
        return self.run.read_json(name) if (self.path / name).is_file() else {}

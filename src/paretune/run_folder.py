"""The run folder: one self-describing directory per run.

    runs/<name>/
      config.yaml        resolved config (every default filled in)
      environment.json   versions, device, host
      data.json          rows, tokens, labels, cache hit
      metrics.jsonl      one line per evaluation during training
      metrics.json       final metrics (validation, test), parameters, timing
      cost.json          time per phase, device, tokens, throughput, peak memory
      model/             Hugging Face format: config.json, model.safetensors, tokenizer, paretune.json
      checkpoints/       resumable checkpoints and the best weights
      README.md          model card with the numbers
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from paretune.config.schema import Config
from paretune.errors import ParetuneError

MODEL_DIR = "model"
TASK_FILE = "paretune.json"  # inside model/: what the Predictor needs beyond config.json


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    # --- creation -----------------------------------------------------------------------
    @classmethod
    def create(cls, config: Config, name_hint: str = "run") -> "RunFolder":
        if config.output.dir:
            path = Path(config.output.dir)
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path("runs") / f"{name_hint}-{stamp}"
        if path.exists() and any(path.iterdir()):
            if not config.output.overwrite:
                raise ParetuneError(
                    f"run folder {path} already exists and is not empty: continue it with "
                    f"`paretune train --resume {path}`, choose another output.dir, "
                    "or set output.overwrite=true to replace it"
                )
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        config.output.dir = str(path)
        run.write_config(config)
        run.write_json("environment.json", environment())
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunFolder":
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise ParetuneError(f"{path} is not a paretune run folder (no config.yaml)")
        return cls(path)

    # --- files --------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    def write_config(self, config: Config) -> None:
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        atomic_write(self.path / "config.yaml", text)

    def read_config(self) -> Config:
        from paretune.config.loading import config_from_dict

        raw = yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))
        return config_from_dict(raw, str(self.path / "config.yaml"))

    def write_json(self, name: str, payload: Any) -> None:
        atomic_write(self.path / name, json.dumps(payload, indent=2, default=_json_default) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())

    def append_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")

    def metrics_history(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, after_step: int) -> None:
        """On resume: drop evaluations logged after the checkpoint, they will be redone."""
        kept = [r for r in self.metrics_history() if r["step"] <= after_step]
        atomic_write(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def is_finished(self) -> bool:
        return (self.path / "metrics.json").is_file()


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def environment() -> dict[str, Any]:
    import accelerate
    import peft
    import torch
    import transformers

    from paretune import __version__

    env: dict[str, Any] = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "paretune": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "peft": peft.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    return env

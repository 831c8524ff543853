"""The run folder: one self-describing directory per run.

    runs/<name>/
      config.yaml        resolved config (every default filled in)
      environment.json   versions, device, host
      data.json          rows, tokens, labels, cache hit
      metrics.jsonl      one line per evaluation during training
      metrics.json       final metrics (validation, test), parameters, timing
      cost.json          time per phase, device, tokens, throughput, peak memory
      model/             Hugging Face format: config.json, model.safetensors, tokenizer, paretune.json
      checkpoints/       resumable checkpoints and the best weights, while the run trains;
                         removed once it has finished unless output.keep_checkpoints_after_run
      README.md          model card with the numbers
      samples.jsonl      a generative run's first validation answers (prompt, reference, answer, match)

Replacing an existing folder (output.overwrite) is run_replace.py's job.
"""
from __future__ import annotations

import errno
import json
import logging
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
from paretune.yaml_file import read_yaml_mapping

log = logging.getLogger("paretune")

MODEL_DIR = "model"
TASK_FILE = "paretune.json"  # inside model/: what the Predictor needs beyond config.json


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    # --- creation -----------------------------------------------------------------------
    @classmethod
    def create(cls, config: Config) -> "RunFolder":
        """A new run folder at output.dir; when that holds a run to replace, its staging folder,
        which is swapped in once the new run has finished (run_replace.py)."""
        from paretune.run_replace import prepare_target

        if not config.output.dir:  # a bug, not a user error: loading the config names the run
            raise ValueError("output.dir must be settled before the run folder is created "
                             "(config.loading.settle_output_dir)")
        path = prepare_target(Path(config.output.dir), config)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise unwritable(path, err) from None
        check_writable(path)
        run = cls(path)
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

        path = self.path / "config.yaml"
        return config_from_dict(read_yaml_mapping(path), str(path))

    def write_json(self, name: str, payload: Any) -> None:
        atomic_write(self.path / name, json.dumps(payload, indent=2, default=_json_default) + "\n")

    def write_jsonl(self, name: str, rows: list[dict]) -> None:
        atomic_write(self.path / name, "".join(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n"
                                               for row in rows))

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())

    def append_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")

    def metrics_history(self) -> list[dict]:
        """Logged evaluations. A torn last line (the process was killed while appending it) is
        dropped; a bad line before it means the file was damaged some other way: an error."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                if number == len(lines):
                    log.warning("%s: dropping line %d, cut short when the run was killed", path, number)
                    break
                raise ParetuneError(f"{path}, line {number}: not valid JSON ({err.msg}): the file was "
                                    "damaged; fix or delete that line and resume again") from None
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """On resume: drop evaluations logged after the checkpoint, they will be redone."""
        kept = [r for r in self.metrics_history() if r["step"] <= after_step]
        atomic_write(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def is_finished(self) -> bool:
        return (self.path / "metrics.json").is_file()

    def remove_checkpoints(self) -> None:
        """After a finished run: step checkpoints, optimizer state and best weights are only for
        resuming and load_best (already done), and are most of the folder's size."""
        shutil.rmtree(self.path / "checkpoints", ignore_errors=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def check_writable(path: Path) -> None:
    """Fail before any training when the run folder cannot be written (read-only folder or disk)."""
    probe = path / f".paretune-write-test{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as err:
        raise unwritable(path, err) from None


def unwritable(path: Path, err: OSError) -> ParetuneError:
    reason = {errno.EROFS: "it is on a read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full"}.get(err.errno, err.strerror)
    return ParetuneError(f"cannot write the run folder {path}: {reason}. Make it writable (e.g. chmod -R u+w "
                         f"{path}), or copy it somewhere writable and use that copy")


def human_size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            raise
        raise unwritable(path.parent, err) from None


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

    from paretune.version import __version__

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

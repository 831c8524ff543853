"""Checkpoints: written atomically, holding everything a resumed run needs to continue exactly.

A checkpoint folder holds the trainable weights (safetensors), optimizer and scheduler state
(torch tensors and numbers only, loaded with weights_only=True), RNG states and the loop's
position (epoch, batch within the epoch, step). It is written to a temporary folder and renamed
into place, so a run killed mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from paretune.engine.rng import restore_rng, rng_json, rng_tensors

PREFIX = "step-"


@dataclass
class LoopState:
    """Where the loop is, and what it has learnt about the run so far."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    best_metric: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    nan_steps: int = 0  # non-finite losses skipped, in total
    samples_seen: int = 0
    tokens_seen: int = 0  # real (unpadded) tokens
    padded_tokens_seen: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False
    finished: bool = False
    extra: dict = field(default_factory=dict)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, path: Path) -> None:
    saved = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n in saved if n not in params]
    if missing:
        raise ValueError(f"{path}: weights for unknown parameters {missing[:3]}: was the method changed?")
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor.to(params[name].dtype))


def save_checkpoint(root: Path, state: LoopState, model, optimizer, scheduler, keep: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    save_file(rng_tensors(), str(tmp / "rng.safetensors"))
    payload = {"loop": asdict(state), "rng": rng_json()}
    (tmp / "state.json").write_text(json.dumps(payload, indent=1))
    if final.exists():  # same step saved again (e.g. epoch end coinciding with save_every)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def load_checkpoint(path: Path, model, optimizer, scheduler) -> LoopState:
    payload = json.loads((path / "state.json").read_text())
    load_trainable_state(model, path / "model.safetensors")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    restore_rng(load_file(str(path / "rng.safetensors")), payload["rng"])
    return LoopState(**payload["loop"])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Checkpoints: written atomically, holding everything a resumed run needs to continue exactly.

A checkpoint folder holds the trainable weights (safetensors), optimizer and scheduler state
(torch tensors and numbers only, loaded with weights_only=True), each process's RNG state, the
number of processes and the loop's position (epoch, batch within the epoch, step). It is written
to a staging folder and renamed into place, so a run killed mid-write leaves the previous
checkpoint intact. Gathering what it holds from the processes is paretune.engine.sharding's job.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from paretune.engine.faults import fault_point
from paretune.engine.rng import restore_rng
from paretune.errors import TrainingError

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
    nan_streak: int = 0  # non-finite losses in a row, up to the last step
    eval_seconds: float = 0.0  # spent in periodic evaluations (included in train_seconds)
    last_eval_step: int | None = None
    # Each process's (sum, count) of training losses since the last evaluation, in rank order, so
    # the first train_loss logged after a resume is the one an uninterrupted run logs.
    train_loss_sums: list | None = None

    @classmethod
    def from_saved(cls, saved: dict) -> "LoopState":
        """The state a checkpoint's state.json holds; older ones kept the last four in `extra`."""
        saved = dict(saved)
        extra = saved.pop("extra", None) or {}
        known = {f.name for f in fields(cls)}
        return cls(**saved, **{k: v for k, v in extra.items() if k in known and k not in saved})


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def read_trainable_weights(path: Path, known: set[str]) -> dict[str, torch.Tensor]:
    """Saved trainable weights, checked against the model's trainable parameter names."""
    saved = load_file(str(path))
    unknown = [n for n in saved if n not in known]
    if unknown:
        raise ValueError(f"{path}: weights for unknown parameters {unknown[:3]}: was the method changed?")
    return saved


def staging_dir(root: Path, step: int) -> Path:
    """Where checkpoint `step` is assembled before the rename (every process can name it)."""
    return root / f".tmp-{PREFIX}{step:08d}"


def save_checkpoint(
    root: Path,
    state: LoopState,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict | None,
    scheduler,
    random_states: list[tuple[dict[str, torch.Tensor], dict]],
    *,
    keep: int,
) -> Path:
    """Write checkpoint `state.step` from whole tensors (main process only).

    `random_states` holds each process's random state in rank order; their number is the world
    size the checkpoint belongs to. `optimizer_state` is None when an engine (DeepSpeed) wrote
    its own into the staging folder already.
    """
    final = root / f"{PREFIX}{state.step:08d}"
    tmp = staging_dir(root, state.step)
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(tmp / "model.safetensors"))
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rng_files = {f"rank{r}.{k}": t for r, (tensors, _) in enumerate(random_states) for k, t in tensors.items()}
    save_file(rng_files, str(tmp / "rng.safetensors"))
    payload = {"loop": asdict(state), "world_size": len(random_states), "rng": [j for _, j in random_states]}
    (tmp / "state.json").write_text(json.dumps(payload, indent=1))
    fault_point("checkpoint", state.step)  # a kill here must leave the previous checkpoint in use
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


def checkpoint_world_size(path: Path) -> int:
    """Processes that wrote checkpoint `path` (checkpoints from before multi-process runs: 1)."""
    return int(json.loads((path / "state.json").read_text()).get("world_size", 1))


def check_world_size(path: Path, world_size: int) -> None:
    saved = checkpoint_world_size(path)
    if saved != world_size:
        raise TrainingError(
            f"{path} was written by {saved} process(es) and this run has {world_size}: resume with the "
            f"same number (paretune train --resume RUN --nproc {saved}, or torchrun / accelerate "
            f"launch with {saved} processes in all). Each process's random state and a sharded "
            "optimizer's pieces belong to one process count."
        )


def read_loop_state(path: Path, world_size: int, rank: int) -> LoopState:
    """The loop's position from checkpoint `path`, after restoring this process's random state."""
    check_world_size(path, world_size)
    payload = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "rng.safetensors"))
    saved_rng = payload["rng"]
    if isinstance(saved_rng, dict):  # one-process checkpoint from before per-process states
        restore_rng(tensors, saved_rng)
    else:
        prefix = f"rank{rank}."
        restore_rng({k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}, saved_rng[rank])
    return LoopState.from_saved(payload["loop"])


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

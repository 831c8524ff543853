"""Weights, optimizer state and random state across processes: whole on disk, whatever in memory.

Saved files always hold whole tensors under the model's own parameter names, so a checkpoint or
best-weights file reads the same whether the run was replicated (one process, DDP) or sharded
(FSDP, DeepSpeed ZeRO). Gathering sharded tensors is a collective: every process calls these
functions, the main process gets the data and writes it.

- replicated: every process holds whole tensors; nothing moves.
- FSDP: torch.distributed.checkpoint's state-dict API gathers full tensors onto the main process
  and scatters them back (FSDP1 and FSDP2 alike).
- DeepSpeed: accelerate gathers ZeRO-3 weights; the partitioned optimizer state is saved and
  restored by DeepSpeed's own checkpoint functions (the only ones that know its layout), into a
  `deepspeed/` folder inside our checkpoint.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object

from paretune.engine.checkpoint import trainable_state
from paretune.engine.rng import rng_json, rng_tensors

DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"


def sharding(acc: Accelerator) -> str:
    """'fsdp', 'deepspeed', or 'none' when each process holds the whole model."""
    if acc.distributed_type == DistributedType.FSDP:
        return "fsdp"
    if acc.distributed_type == DistributedType.DEEPSPEED:
        return "deepspeed"
    return "none"


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(acc: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight and buffer, whole, on the main process ({} elsewhere). Collective."""
    kind = sharding(acc)
    if kind == "fsdp":
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(model, options=_full_options())
    else:  # DeepSpeed: ZeRO-3 gathers 16-bit weights (zero3_save_16bit_model); others copy
        state = acc.get_state_dict(model)
    return state if acc.is_main_process else {}


def trainable_weights(acc: Accelerator, model: torch.nn.Module, names: set[str]) -> dict[str, torch.Tensor]:
    """Trainable weights as fp32 CPU tensors on the main process ({} elsewhere). Collective."""
    if sharding(acc) == "none":
        return trainable_state(acc.unwrap_model(model)) if acc.is_main_process else {}
    full = full_model_state(acc, model)
    return {n: t.detach().float().cpu().contiguous() for n, t in full.items() if n in names}


def load_trainable_weights(acc: Accelerator, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy whole trainable tensors (read by every process) into the model. Collective."""
    kind = sharding(acc)
    if kind == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
        return
    unwrapped = acc.unwrap_model(model)
    params = dict(unwrapped.named_parameters())
    with _gathered(acc, [params[n] for n in weights]), torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].dtype))


def _gathered(acc: Accelerator, params: list[torch.nn.Parameter]):
    """ZeRO-3 keeps each parameter in pieces: assemble them while we write, re-split after."""
    if sharding(acc) == "deepspeed" and acc.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=0)
    return nullcontext()


def optimizer_state(acc: Accelerator, model: torch.nn.Module, optimizer) -> dict | None:
    """The optimizer's state for optimizer.pt on the main process (None elsewhere, and under
    DeepSpeed, whose engine saves its own). Collective under FSDP."""
    kind = sharding(acc)
    if kind == "deepspeed":
        return None
    if kind == "fsdp":
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(model, optimizer.optimizer, options=_full_options())
        return state if acc.is_main_process else None
    return optimizer.state_dict() if acc.is_main_process else None


def load_optimizer_state(acc: Accelerator, model: torch.nn.Module, optimizer, folder: Path) -> None:
    """Restore optimizer state from checkpoint `folder` on every process. Collective."""
    kind = sharding(acc)
    if kind == "deepspeed":
        # DeepSpeed's loader unpickles its own files, written by this run's engine.
        model.load_checkpoint(str(folder / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, load_module_strict=False)
        return
    state = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
    if kind == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer.optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)


def save_engine_state(acc: Accelerator, model: torch.nn.Module, folder: Path) -> None:
    """DeepSpeed only: every process writes its optimizer partition into `folder`. Collective."""
    if sharding(acc) == "deepspeed":
        model.save_checkpoint(str(folder / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)


def random_states(acc: Accelerator) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """Each process's random state, in rank order, on every process. Collective."""
    mine = (rng_tensors(), rng_json())
    if acc.num_processes == 1:
        return [mine]
    # Plain objects between our own processes (torch pickles them over the process group).
    return gather_object([mine])


def whole_model(acc: Accelerator, model: torch.nn.Module, rebuild) -> torch.nn.Module | None:
    """The trained sharded model, whole, on the main process (None elsewhere). Collective.

    `rebuild()` makes a fresh copy of the model (the same setup, before training) that takes the
    gathered weights; frozen weights a gather may leave out (tied ones) are right in the copy,
    since training never changed them. A trainable one left out is an error.
    """
    state = full_model_state(acc, model)
    if not acc.is_main_process:
        return None
    whole = rebuild()
    missing, unexpected = whole.load_state_dict(state, strict=False)
    trainable = {n for n, p in whole.named_parameters() if p.requires_grad}
    lost = [n for n in missing if n in trainable] + list(unexpected)
    if lost:
        raise RuntimeError(f"gathered weights do not fit the rebuilt model: {lost[:3]}")
    return whole

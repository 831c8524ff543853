"""LoRA (Hu et al. 2021): train a low-rank update B·A beside frozen projection weights, via peft.

The update starts at zero (B = 0), so training begins from the pretrained function, and after
training it folds into the weights (W + alpha/r · B·A): the exported model is a plain transformers
model as fast as the original. Default targets are the attention query and value projections,
the LoRA paper's choice; `target_modules: all-linear` adapts every projection in the blocks.
The task head always trains in full and is saved with the adapter.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.methods import targets
from paretune.methods.base import Method, MethodContext, MethodOptions

DEFAULT_ROLES = ("query", "value")


class LoraOptions(MethodOptions):
    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, description="Rank of the update.")
    alpha: float = Field(16.0, gt=0, description="The update is scaled by alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA branch input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="Layer-name suffixes to adapt; default: attention query and value."
    )


def target_kwargs(model: torch.nn.Module, target_modules, context: MethodContext) -> dict:
    """What every LoRA-family peft config needs: task type, adapted layers, the head to train."""
    if target_modules == "all-linear":
        names = targets.resolve_all_linear(model)
    else:
        names = targets.resolve(model, DEFAULT_ROLES, target_modules)
    return {
        "task_type": targets.peft_task_type(context.task_type),
        "target_modules": names,
        "modules_to_save": targets.head_modules(model),
        "fan_in_fan_out": targets.transposed(model, names),
    }


def lora_config(model: torch.nn.Module, options: LoraOptions, context: MethodContext):
    import peft

    return peft.LoraConfig(
        r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
        **target_kwargs(model, options.target_modules, context),
    )


def apply(model: torch.nn.Module, options: LoraOptions, context: MethodContext) -> torch.nn.Module:
    return targets.wrap_with_peft(model, lora_config(model, options, context))


METHOD = Method("lora", LoraOptions, apply, "low-rank updates beside frozen projections (peft)",
                lr_scale=10.0)

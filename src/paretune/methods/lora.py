"""LoRA (Hu et al. 2021): train a low-rank update B·A beside frozen projection weights, via peft.

The update starts at zero (B = 0), so training begins from the pretrained function, and after
training it folds into the weights (W + alpha/r · B·A): the exported model is a plain transformers
model as fast as the original. Default: rank 16, alpha 32, every projection inside the
transformer blocks (attention and feed-forward: QLoRA's choice), at ten times full fine-tuning's
learning rate. The LoRA paper's query+value at rank 8 trailed full fine-tuning by 3.1 points on
SST-2 and 17 entity-F1 points on CoNLL-2003 (2,000 rows, 2 epochs); these defaults came within
0.3 points on SST-2 and beat it by 2.3 on CoNLL (bench/lora_defaults.py, bench/RESULTS.md).
Models without transformer blocks (convolutional image backbones) fall back to their
role-named layers. The task head always trains in full and is saved with the adapter.
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
    r: int = Field(16, ge=1, description="Rank of the update.")
    alpha: float = Field(32.0, gt=0, description="The update is scaled by alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA branch input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="Layer-name suffixes to adapt, or all-linear; default: every projection in the "
        "transformer blocks (role-named layers on models without such blocks)."
    )


def target_kwargs(model: torch.nn.Module, target_modules, context: MethodContext, all_linear: bool = True) -> dict:
    """What every LoRA-family peft config needs: task type, adapted layers, the head to train.
    `all_linear`: whether unset target_modules means every projection (else the role defaults)."""
    names = None
    if target_modules == "all-linear" or (target_modules is None and all_linear):
        names = _all_linear(model, required=target_modules == "all-linear")
    if not names:
        names = targets.resolve(model, DEFAULT_ROLES, target_modules)
    return {
        "task_type": targets.peft_task_type(context.task_type),
        "target_modules": names,
        "modules_to_save": targets.head_modules(model),
        "fan_in_fan_out": targets.transposed(model, names),
    }


def _all_linear(model: torch.nn.Module, required: bool) -> list[str]:
    """Every projection in the blocks; [] for the default on a model without transformer blocks."""
    try:
        return targets.resolve_all_linear(model)
    except ValueError:
        if required:
            raise
        return []


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

"""(IA)³ (Liu et al. 2022): learn one scaling vector per adapted layer, via peft.

Keys and values are rescaled on their outputs, the feed-forward block on the input of its output
projection (the paper rescales the FFN's intermediate activation, which is the same thing). The
vectors start at one, train a few thousand parameters per model, and fold into the weights at
export. The task head trains in full.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.methods import targets
from paretune.methods.base import Method, MethodContext, MethodOptions

DEFAULT_ROLES = ("key", "value", "ffn_output")
FEEDFORWARD_ROLES = ("ffn_output",)


class IA3Options(MethodOptions):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(
        None, description="Layer-name suffixes to rescale; default: key, value and FFN output."
    )
    feedforward_modules: list[str] | None = Field(
        None, description="Which of the targets scale their input (FFN-style); default: FFN output layers."
    )


def apply(model: torch.nn.Module, options: IA3Options, context: MethodContext) -> torch.nn.Module:
    import peft

    names = targets.resolve(model, DEFAULT_ROLES, options.target_modules)
    if options.feedforward_modules is not None:
        feedforward = targets.resolve(model, FEEDFORWARD_ROLES, options.feedforward_modules)
    elif targets.family(model) is not None:
        feedforward = targets.resolve(model, FEEDFORWARD_ROLES)
    else:
        feedforward = []
    config = peft.IA3Config(
        task_type=targets.peft_task_type(context.task_type),
        target_modules=names,
        feedforward_modules=[n for n in names if n in feedforward],  # peft wants a subset of targets
        modules_to_save=targets.head_modules(model),
        fan_in_fan_out=targets.transposed(model, names),
    )
    return targets.wrap_with_peft(model, config)


METHOD = Method("ia3", IA3Options, apply, "learned rescaling of keys, values and FFN (peft)",
                lr_scale=30.0)

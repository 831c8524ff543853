"""Prefix tuning (Li & Liang 2021): learned key/value vectors prepended in every layer, via peft.

Unlike prompt tuning, the prefix enters every attention layer directly (as extra keys and
values), so it steers the model more strongly for the same number of virtual tokens. The
pretrained weights stay frozen; only the prefix (and the task head) train. With
`projection: true` the prefix is produced by a two-layer MLP, as in the paper, which trains more
stably; `init: zero` starts from keys and values of 0 instead of peft's random ones.

Caveats: BERT-style encoders treat the prefix as a cache of earlier tokens and shift the input's
position ids by `num_virtual_tokens`, which costs a little accuracy at first and must fit in the
position embeddings. The prefix cannot be merged into weights (see prompt.py for what that means
for export).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.methods import targets
from paretune.methods.base import Method, MethodContext, MethodOptions
from paretune.methods.causal_virtual_tokens import unpack_for_virtual_tokens


class PrefixOptions(MethodOptions):
    name: Literal["prefix"] = "prefix"
    num_virtual_tokens: int = Field(20, ge=1, description="Prefix length, in key/value positions per layer.")
    projection: bool = Field(False, description="Produce the prefix with an MLP (reparameterisation).")
    projection_size: int | None = Field(None, ge=1, description="MLP hidden size; default: model hidden size.")
    init: Literal["random", "zero"] = Field("random", description="Initial prefix keys and values.")


def apply(model: torch.nn.Module, options: PrefixOptions, context: MethodContext) -> torch.nn.Module:
    import peft

    config = peft.PrefixTuningConfig(
        task_type=targets.peft_task_type(context.task_type),
        num_virtual_tokens=options.num_virtual_tokens,
        prefix_projection=options.projection,
        encoder_hidden_size=options.projection_size or model.get_input_embeddings().embedding_dim,
        init_weights="zero" if options.init == "zero" else None,
        modules_to_save=targets.head_modules(model),
    )
    model = targets.wrap_with_peft(model, config)
    unpack_for_virtual_tokens(model)  # a causal LM's packed rows: one row per example
    return model


METHOD = Method("prefix", PrefixOptions, apply, "learned key/value prefixes in every layer (peft)",
                lr_scale=30.0)

"""P-tuning (Liu et al. 2021): prompt embeddings produced by a small trained encoder, via peft.

Like prompt tuning, virtual tokens are prepended to the input and the model stays frozen, but the
prompt comes from an MLP (or LSTM) over learned vectors, which makes it easier to optimise.
Only the prompt encoder and the task head train. It cannot be merged into weights (see
prompt.py for what that means for export), and it also wants a high learning rate (~1e-3 to 1e-2).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.methods import targets
from paretune.methods.base import Method, MethodContext, MethodOptions
from paretune.methods.prompt import align_token_logits


class PTuningOptions(MethodOptions):
    name: Literal["p-tuning"] = "p-tuning"
    num_virtual_tokens: int = Field(20, ge=1, description="Virtual tokens prepended to each input.")
    encoder: Literal["mlp", "lstm"] = Field("mlp", description="What turns learned vectors into the prompt.")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Default: the model's hidden size.")


def apply(model: torch.nn.Module, options: PTuningOptions, context: MethodContext) -> torch.nn.Module:
    import peft

    targets.check_virtual_positions(model, options.num_virtual_tokens, context)
    hidden = options.encoder_hidden_size or model.get_input_embeddings().embedding_dim
    config = peft.PromptEncoderConfig(
        task_type=targets.peft_task_type(context.task_type),
        num_virtual_tokens=options.num_virtual_tokens,
        encoder_reparameterization_type=options.encoder.upper(),
        encoder_hidden_size=hidden,
        modules_to_save=targets.head_modules(model),
    )
    model = targets.wrap_with_peft(model, config)
    align_token_logits(model)
    return model


METHOD = Method("p-tuning", PTuningOptions, apply, "prompt embeddings from a trained encoder (peft)",
                lr_scale=100.0)

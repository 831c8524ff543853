"""Prompt tuning (Lester et al. 2021): learn a few input embeddings prepended to every input, via peft.

The whole pretrained model stays frozen; only `num_virtual_tokens` vectors (and the task head)
train, the smallest adapter there is. It needs a far higher learning rate than full fine-tuning
(the paper used 0.3 with Adafactor; start near 1e-2 with AdamW) and works best on large models.
Because the prompt comes first, a BERT-style classifier's pooler reads the first virtual token,
not [CLS]. Inputs grow by `num_virtual_tokens` positions, which must fit the model's position
embeddings together with data.max_length. The prompt cannot be folded into weights, so the
run's model/ folder holds the frozen base plus the prompt, and `export --merge` refuses.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.methods import targets
from paretune.methods.base import Method, MethodContext, MethodOptions


class PromptOptions(MethodOptions):
    name: Literal["prompt"] = "prompt"
    num_virtual_tokens: int = Field(20, ge=1, description="Learned embeddings prepended to each input.")
    init: Literal["vocab", "random"] = Field(
        "vocab", description="Start from embeddings of random vocabulary tokens, or from random vectors."
    )


def apply(model: torch.nn.Module, options: PromptOptions, context: MethodContext) -> torch.nn.Module:
    import peft

    targets.check_virtual_positions(model, options.num_virtual_tokens, context)
    config = peft.PromptTuningConfig(
        task_type=targets.peft_task_type(context.task_type),
        num_virtual_tokens=options.num_virtual_tokens,
        prompt_tuning_init="SAMPLE_VOCAB" if options.init == "vocab" else "RANDOM",
        modules_to_save=targets.head_modules(model),
    )
    model = targets.wrap_with_peft(model, config)
    align_token_logits(model)
    return model


def align_token_logits(model: torch.nn.Module) -> None:
    """For token tasks, drop the virtual tokens' logits so outputs line up with the input tokens.

    Prompt tuning and p-tuning prepend the prompt to the input sequence, and peft's token
    classification returns logits for it too; prefix tuning adds to keys and values only.
    A causal LM gets one padded row per example instead of packed rows (causal_virtual_tokens.py).
    """
    from paretune.methods.causal_virtual_tokens import unpack_for_virtual_tokens

    unpack_for_virtual_tokens(model)
    config = model.active_peft_config
    if config.task_type == "TOKEN_CLS" and config.peft_type in ("PROMPT_TUNING", "P_TUNING"):
        model.register_forward_hook(_drop_virtual_tokens)


def _drop_virtual_tokens(model, args, output):
    output.logits = output.logits[:, model.active_peft_config.num_virtual_tokens:]
    return output


METHOD = Method("prompt", PromptOptions, apply, "learned input embeddings, model frozen (peft)",
                lr_scale=100.0)

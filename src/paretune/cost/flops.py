"""Training FLOPs from parameter counts: which weights train, which are frozen, and where.

A weight matrix W applied to one token costs 2|W| FLOPs forward (a multiply and an add per
weight). Backward costs up to twice that: 2|W| for the gradient of W itself, needed only when W
trains, and 2|W| for the gradient of W's input, needed only when something below W trains (the
gradient has to travel down to it). Per token and weight, that gives:

    trainable weight, something trainable below it    6   (the classic 6 x params x tokens)
    trainable weight, nothing trainable below it      4   (the lowest trainable layer)
    frozen weight, something trainable below it       4   (LoRA's frozen base above an adapter)
    frozen weight, nothing trainable below it         2   (frozen bottom layers: forward only)

"Below" is read from the order modules are registered in, which for transformers follows the
order they compute in. Parallel branches of the first trainable block (the key projection beside
a LoRA'd query) are charged an input gradient they do not need: a small overcount in one block.

Left out on purpose: embedding tables (a lookup, not a matmul; counted apart as
`embedding_params`), attention scores (QK^T and AV: about seq_len / (6 x width) of the total,
~1% for MiniLM on SST-2), norms and activations, the optimizer update, and the task head
running on one token per row rather than all of them (it is charged per token: tiny).
Tokens are the padded positions the hardware computed, plus prompt-tuning's virtual tokens.
"""
from __future__ import annotations

import torch

RULE = "2 forward + 2 weight-gradient (trainable) + 2 input-gradient (trainable below) x params x tokens"


def _weights(param: torch.nn.Parameter) -> int:
    # bitsandbytes packs two 4-bit weights per stored byte (QLoRA): count the weights, not the bytes.
    return param.numel() * (2 if type(param).__name__ == "Params4bit" else 1)


def _prompt_learning(model: torch.nn.Module) -> tuple[bool, int]:
    """(trains inputs at the bottom, virtual tokens added to every row) for peft prompt methods."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return False, 0
    # Prompt and p-tuning prepend their tokens to the input; prefix tuning adds keys and values only.
    extends_input = getattr(config.peft_type, "value", config.peft_type) in ("PROMPT_TUNING", "P_TUNING")
    return True, int(config.num_virtual_tokens) if extends_input else 0


def parameter_flops(model: torch.nn.Module) -> dict[str, int]:
    """FLOPs per token and the parameter split they come from (see the module doc)."""
    trains_below, virtual_tokens = _prompt_learning(model)
    per_token = trainable = frozen = embedding = prompt_encoder = 0
    for name, module in model.named_modules():
        if ".original_module" in f".{name}":
            continue  # peft keeps a frozen copy of a retrained head that never runs
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        n_trainable = sum(_weights(p) for p in own if p.requires_grad)
        n_frozen = sum(_weights(p) for p in own if not p.requires_grad)
        if isinstance(module, torch.nn.Embedding):
            embedding += n_trainable + n_frozen
        elif name.startswith("prompt_encoder"):
            prompt_encoder += n_trainable  # p-tuning's MLP: runs on the virtual tokens only
        else:
            input_gradient = 2 if trains_below else 0
            per_token += (4 + input_gradient) * n_trainable + (2 + input_gradient) * n_frozen
            trainable += n_trainable
            frozen += n_frozen
        trains_below = trains_below or n_trainable > 0
    return {
        "flops_per_token": per_token,
        "trainable_params": trainable,
        "frozen_params": frozen,
        "embedding_params": embedding,
        "prompt_encoder_params": prompt_encoder,
        "virtual_tokens": virtual_tokens,
    }


def training_flops(model: torch.nn.Module, padded_tokens: int, samples: int) -> dict:
    """Estimated FLOPs of a training run that computed `padded_tokens` positions over `samples` rows."""
    split = parameter_flops(model)
    virtual = split.pop("virtual_tokens") * samples
    tokens = padded_tokens + virtual
    total = split["flops_per_token"] * tokens + 6 * split["prompt_encoder_params"] * virtual
    return {"train": int(total), "tokens": int(tokens), **split, "rule": RULE}

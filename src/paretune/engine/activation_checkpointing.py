"""`training.gradient_checkpointing`: keep only each layer's input, recompute the rest in backward.

transformers does the work (`activation_checkpointing_enable`, named `gradient_checkpointing_enable`
before v5) with torch's non-reentrant checkpoint: it needs no input that requires grad, handles
frozen layers under adapters and keeps the dropout masks of the first pass. The input embedding is
still made to require grad under adapters (`enable_input_require_grads`), as peft asks, so a model
whose own code falls back to the reentrant form also gets gradients into its adapters.
"""
from __future__ import annotations

import torch

from paretune.errors import ConfigError


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    base = _transformers_model(model)
    if base is None or not getattr(base, "supports_gradient_checkpointing", False):
        name = type(base or model).__name__
        raise ConfigError(f"training.gradient_checkpointing: {name} does not support it; set it to false")
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    embeddings = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    if embeddings is not None and not any(p.requires_grad for p in embeddings.parameters()):
        base.enable_input_require_grads()


def _transformers_model(model: torch.nn.Module):
    """The transformers model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    return base if hasattr(base, "supports_gradient_checkpointing") else None

"""Find the embedding module and the stack of transformer blocks of a Hugging Face model.

Architectures name these differently (`bert.encoder.layer`, `distilbert.transformer.layer`,
`model.layers`, `transformer.h`), so rather than a table per architecture we look for the
ModuleList whose length is the configured number of layers. The embeddings are what
`get_input_embeddings()` returns plus their siblings (position/type embeddings, LayerNorm) when
the base model groups them in an `embeddings` module.
"""
from __future__ import annotations

import torch


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "base_model", model)


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    config = getattr(model, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    n_layers = n_layers or len(getattr(config, "depths", None) or ()) or None  # conv nets: stages
    for _, module in base_model(model).named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(
        f"cannot find the {n_layers} transformer blocks of {type(model).__name__}; "
        "use method.name=full or a supported architecture"
    )


def embedding_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    for name in ("embeddings", "embedder"):  # ResNet-style vision models call their stem `embedder`
        grouped = getattr(base_model(model), name, None)
        if isinstance(grouped, torch.nn.Module):
            return [grouped]
    return [model.get_input_embeddings()]

"""Layer freezing: train only the top of the network.

Frozen: the embeddings (unless `freeze_embeddings: false`) and the lowest transformer blocks.
Everything else, the pooler and task head included, trains. `trainable_layers: 0` trains the
head only. Lower layers hold general features; freezing them cuts optimizer memory and backward
time roughly in proportion.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from paretune.errors import ConfigError
from paretune.methods.base import Method, MethodContext, MethodOptions
from paretune.methods.layers import embedding_modules, transformer_blocks


class FreezeOptions(MethodOptions):
    name: Literal["freeze"] = "freeze"
    trainable_layers: int | None = Field(
        None, ge=0, description="Top transformer blocks that train (0 = head only)."
    )
    freeze_layers: int | None = Field(None, ge=0, description="Bottom transformer blocks that are frozen.")
    freeze_embeddings: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> "FreezeOptions":
        if self.trainable_layers is not None and self.freeze_layers is not None:
            raise ValueError("set method.trainable_layers or method.freeze_layers, not both")
        if self.trainable_layers is None and self.freeze_layers is None:
            self.trainable_layers = 2
        return self


def apply(model: torch.nn.Module, options: FreezeOptions, context: MethodContext) -> torch.nn.Module:
    blocks = transformer_blocks(model)
    if options.freeze_layers is not None:
        n_frozen = options.freeze_layers
    else:
        n_frozen = len(blocks) - options.trainable_layers
    if not 0 <= n_frozen <= len(blocks):
        key = "freeze_layers" if options.freeze_layers is not None else "trainable_layers"
        raise ConfigError(
            f"method.{key}={getattr(options, key)}, but the model has {len(blocks)} transformer blocks; "
            f"use at most {len(blocks)}"
        )
    for param in model.parameters():
        param.requires_grad_(True)
    frozen = list(blocks[:n_frozen])
    if options.freeze_embeddings:
        frozen += embedding_modules(model)
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
    return model


METHOD = Method("freeze", FreezeOptions, apply, "freeze embeddings and the lowest blocks")

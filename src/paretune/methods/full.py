"""Full fine-tuning: every parameter trains."""
from __future__ import annotations

from typing import Literal

import torch

from paretune.methods.base import Method, MethodContext, MethodOptions


class FullOptions(MethodOptions):
    name: Literal["full"] = "full"


def apply(model: torch.nn.Module, options: FullOptions, context: MethodContext) -> torch.nn.Module:
    for param in model.parameters():
        param.requires_grad_(True)
    return model


METHOD = Method("full", FullOptions, apply, "update every weight")

"""What every fine-tuning method provides."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict


class MethodOptions(BaseModel):
    """Base of every method's options; subclasses add `name: Literal[...]` and their own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class Method:
    name: str
    options: type[MethodOptions]
    # (model, options) -> model to train. May freeze parameters or wrap the model (peft).
    apply: Callable[[torch.nn.Module, MethodOptions], torch.nn.Module]
    description: str = ""

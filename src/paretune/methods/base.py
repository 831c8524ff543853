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
class MethodContext:
    """What a method may need to know about the run it is applied to."""

    task_type: str  # classification, multilabel, regression, ner
    total_steps: int  # optimizer steps the run will take (AdaLoRA's budget schedule needs it)
    max_length: int | None = None  # data.max_length: tokens per example before any method adds some


@dataclass(frozen=True)
class Method:
    name: str
    options: type[MethodOptions]
    # (model, options, context) -> model to train. May freeze parameters or wrap the model (peft).
    apply: Callable[[torch.nn.Module, MethodOptions, MethodContext], torch.nn.Module]
    description: str = ""
    # Called after every optimizer step with (model, step), e.g. AdaLoRA's rank reallocation.
    on_step: Callable[[torch.nn.Module, int], None] | None = None
    # Multiplies the default learning rate (used only when training.lr is unset): methods that
    # train a few new parameters from scratch need a larger step than full fine-tuning.
    lr_scale: float = 1.0
    # Added to the task loss of every micro-batch: (model) -> scalar, e.g. a regularizer.
    extra_loss: Callable[[torch.nn.Module], torch.Tensor] | None = None
    # False: the run is not made by the Trainer (few-shot and zero-shot have their own recipe in
    # paretune.recipes; ensemble and soup are made from finished runs by their commands).
    trained_by_loop: bool = True

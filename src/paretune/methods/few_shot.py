"""few-shot: the SetFit recipe on a few labelled examples per class.

Contrastive fine-tuning of the sentence-embedding body on pairs drawn from the examples (same
label: cosine similarity 1, different labels: 0), then a logistic-regression head on the
mean-pooled, normalised embeddings. The Trainer does not run it: paretune.recipes.few_shot does,
and the model is stored as the body plus a linear head (stored/embedding_head.py).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.errors import ConfigError
from paretune.methods.base import Method, MethodContext, MethodOptions


class FewShotOptions(MethodOptions):
    name: Literal["few-shot"] = "few-shot"
    examples_per_class: int | None = Field(
        16, ge=1, description="Labelled examples drawn per class from data.train (null: every row).")
    iterations: int = Field(20, ge=1, description="Pairs drawn per example and round (SetFit's num_iterations).")
    max_pairs: int = Field(2560, ge=2, description="Cap on contrastive pairs, so large shots stay cheap.")
    epochs: int = Field(1, ge=0, description="Passes over the pairs (0: the head alone, on the body as it is).")
    lr: float = Field(2e-5, gt=0, description="Learning rate of the body on the pairs.")
    batch_size: int = Field(16, ge=1, description="Pairs per step.")
    head_c: float = Field(1.0, gt=0, description="Inverse regularisation of the logistic-regression head.")


def not_by_the_loop(model: torch.nn.Module, options: MethodOptions, context: MethodContext) -> torch.nn.Module:
    raise ConfigError(f"method {options.name} has its own recipe (paretune.recipes): train it with "
                      "`paretune train` or paretune.finetune, not by applying it to a model")


METHOD = Method("few-shot", FewShotOptions, not_by_the_loop, "SetFit: contrastive pairs, then a linear head",
                trained_by_loop=False)

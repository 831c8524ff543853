"""Runs made from other runs, not trained by the loop: `ensemble` and `soup`.

They are methods so that the run folders `paretune ensemble` and `paretune soup` write describe
themselves in config.yaml like any run (`method: {name: ensemble, rule: weighted, members: [...]}`)
and the frontier names their points. Training one with `paretune train` is refused with the
command that makes it.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.errors import ConfigError
from paretune.methods.base import Method, MethodContext, MethodOptions


class EnsembleOptions(MethodOptions):
    name: Literal["ensemble"] = "ensemble"
    rule: Literal["average", "weighted", "vote", "stacking"] = Field(
        "average", description="How member probabilities combine (weighted and stacking are fitted on validation).")
    members: list[str] = Field(default_factory=list, description="The member run folders.")
    weights: list[float] | None = Field(None, description="Member weights (average: equal; weighted: fitted).")


class SoupOptions(MethodOptions):
    name: Literal["soup"] = "soup"
    recipe: Literal["uniform", "greedy"] = Field("uniform", description="Average all runs, or add greedily.")
    merge: Literal["average", "ties", "dare_linear"] = Field(
        "average", description="average: mean of weights; ties / dare_linear: peft's merge of LoRA adapters.")
    members: list[str] = Field(default_factory=list, description="The run folders offered to the soup.")
    kept: list[str] = Field(default_factory=list, description="The runs the soup kept (greedy keeps fewer).")


def _made_by(command: str):
    def apply(model: torch.nn.Module, options: MethodOptions, context: MethodContext) -> torch.nn.Module:
        raise ConfigError(f"method {options.name} is not trained: it is made from finished runs by "
                          f"`paretune {command} RUN... --output DIR`")
    return apply


ENSEMBLE = Method("ensemble", EnsembleOptions, _made_by("ensemble"), "combine the predictions of finished runs",
                  trained_by_loop=False)
SOUP = Method("soup", SoupOptions, _made_by("soup"), "average the weights of runs fine-tuned from one base",
              trained_by_loop=False)

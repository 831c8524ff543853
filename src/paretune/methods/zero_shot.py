"""zero-shot: no training; the label whose description embeds nearest to the text wins.

Each label's description (the label name when none is given, put into `template`) is embedded
with the model's mean-pooled sentence embedding; a text's logits are its cosine similarities to
them, times `scale`. paretune.recipes.zero_shot writes the run; the model is stored like a
few-shot one, a body plus a linear head (stored/embedding_head.py), so training cost is $0 and
the frontier shows it beside trained runs.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from paretune.methods.base import Method
from paretune.methods.few_shot import not_by_the_loop
from paretune.methods.base import MethodOptions


class ZeroShotOptions(MethodOptions):
    name: Literal["zero-shot"] = "zero-shot"
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="Label -> description; a label left out is described by its name.")
    template: str = Field("{}", description="Wraps each description, e.g. 'a {} movie review'.")
    scale: float = Field(20.0, gt=0, description="Cosine similarities times this are the logits.")


METHOD = Method("zero-shot", ZeroShotOptions, not_by_the_loop, "nearest label description, no training",
                trained_by_loop=False)

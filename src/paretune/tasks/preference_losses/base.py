"""What every preference loss takes and returns.

A batch reaches a loss as per-sequence sums over answer tokens, in pairs of slots: slot 2j is
pair j's chosen answer (KTO: the row's completion) and slot 2j+1 its rejected answer (KTO: the
row's prompt with another row's completion, for the KL estimate). Log-probabilities are summed
over the answer's target tokens (its end-of-turn token included); `tokens` counts them, so a loss
that wants the average divides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict


class LossOptions(BaseModel):
    """Base of every loss's options; subclasses add `name: Literal[...]` and their own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass
class SequenceScores:
    logps: torch.Tensor  # [2n] the policy's summed answer log-probs (with gradients)
    tokens: torch.Tensor  # [2n] answer tokens per sequence
    ref_logps: torch.Tensor  # [2n] the reference model's summed answer log-probs (no gradients)
    desirable: torch.Tensor  # [n] bool, KTO: is row j's completion desirable (pairs: all True)

    @property
    def chosen(self) -> torch.Tensor:
        return self.logps[0::2]

    @property
    def rejected(self) -> torch.Tensor:
        return self.logps[1::2]


@dataclass
class LossResult:
    loss: torch.Tensor  # scalar, the mean over the batch's rows
    chosen_rewards: torch.Tensor  # [n] (KTO: the completion's reward)
    rejected_rewards: torch.Tensor  # [n] (KTO: NaN: a row holds one answer)


@dataclass(frozen=True)
class PreferenceLoss:
    name: str
    options: type[LossOptions]
    compute: Callable[[LossOptions, SequenceScores], LossResult]
    needs_reference: bool  # whether reference log-probs must be computed before training
    pairs: bool = True  # False: rows are unpaired answers with a desirable label (KTO)
    description: str = ""

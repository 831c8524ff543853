"""SimPO (Meng et al. 2024): the margin of length-normalised log-probs (beta times the per-token
average) must exceed `gamma`; no reference model. Same numbers as TRL's CPOTrainer with
loss_type=simpo and cpo_alpha=0 (its `simpo_gamma` is `gamma` here).
"""
from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field

from paretune.tasks.preference_losses.base import LossOptions, LossResult, PreferenceLoss, SequenceScores


class SimpoOptions(LossOptions):
    name: Literal["simpo"] = "simpo"
    beta: float = Field(2.0, gt=0, description="Scale of the length-normalised reward.")
    gamma: float = Field(0.5, ge=0, description="Target reward margin between chosen and rejected.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed share of flipped labels.")


def simpo_loss(options: SimpoOptions, scores: SequenceScores) -> LossResult:
    chosen_avg = scores.chosen / scores.tokens[0::2]
    rejected_avg = scores.rejected / scores.tokens[1::2]
    margin = options.beta * (chosen_avg - rejected_avg) - options.gamma
    eps = options.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(margin) - eps * F.logsigmoid(-margin)
    return LossResult(losses.mean(), options.beta * chosen_avg.detach(), options.beta * rejected_avg.detach())


LOSS = PreferenceLoss("simpo", SimpoOptions, simpo_loss, needs_reference=False,
                      description="length-normalised margin, no reference model")

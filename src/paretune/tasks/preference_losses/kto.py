"""KTO (Ethayarajh et al. 2024): unpaired answers labelled desirable or not. A desirable answer's
log-ratio to the reference is pushed above the batch's KL estimate, an undesirable one's below it.
The KL estimate is the mean log-ratio of mismatched answers (each row's prompt with the next
row's completion, paired once when the data is encoded), clamped at 0 and not differentiated,
as in TRL's KTOTrainer.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.tasks.preference_losses.base import LossOptions, LossResult, PreferenceLoss, SequenceScores


class KtoOptions(LossOptions):
    name: Literal["kto"] = "kto"
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model.")
    desirable_weight: float = Field(1.0, gt=0, description="Weight of desirable answers' losses.")
    undesirable_weight: float = Field(1.0, gt=0, description="Weight of undesirable answers' losses "
                                                             "(raise it when they are fewer).")


def kto_loss(options: KtoOptions, scores: SequenceScores) -> LossResult:
    ratio = scores.chosen - scores.ref_logps[0::2]  # the rows' own completions
    kl = (scores.rejected - scores.ref_logps[1::2]).mean().detach().clamp(min=0)
    good = scores.desirable
    chosen_losses = 1 - torch.sigmoid(options.beta * (ratio[good] - kl))
    rejected_losses = 1 - torch.sigmoid(options.beta * (kl - ratio[~good]))
    losses = torch.cat((options.desirable_weight * chosen_losses, options.undesirable_weight * rejected_losses))
    rewards = options.beta * ratio.detach()
    return LossResult(losses.mean(), rewards, torch.full_like(rewards, float("nan")))


LOSS = PreferenceLoss("kto", KtoOptions, kto_loss, needs_reference=True, pairs=False,
                      description="unpaired answers labelled desirable or not")

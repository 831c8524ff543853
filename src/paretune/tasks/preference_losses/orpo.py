"""ORPO (Hong et al. 2024): SFT on the chosen answer plus a penalty on the odds ratio of chosen to
rejected, no reference model. Log-probs are per-token averages, as in the paper and TRL's
ORPOTrainer (whose `beta` is `odds_ratio_weight` here, the paper's lambda).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.tasks.preference_losses.base import LossOptions, LossResult, PreferenceLoss, SequenceScores


class OrpoOptions(LossOptions):
    name: Literal["orpo"] = "orpo"
    odds_ratio_weight: float = Field(0.1, gt=0, description="Weight of the odds-ratio term against the SFT "
                                                            "loss (the paper's lambda).")


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(options: OrpoOptions, scores: SequenceScores) -> LossResult:
    chosen_tokens, rejected_tokens = scores.tokens[0::2], scores.tokens[1::2]
    chosen_avg, rejected_avg = scores.chosen / chosen_tokens, scores.rejected / rejected_tokens
    # The SFT term: mean negative log-likelihood over every chosen token of the batch.
    nll = -scores.chosen.sum() / chosen_tokens.sum()
    log_odds = (chosen_avg - rejected_avg) - (log1mexp(chosen_avg) - log1mexp(rejected_avg))
    loss = nll - options.odds_ratio_weight * F.logsigmoid(log_odds).mean()
    weight = options.odds_ratio_weight
    return LossResult(loss, weight * chosen_avg.detach(), weight * rejected_avg.detach())


LOSS = PreferenceLoss("orpo", OrpoOptions, orpo_loss, needs_reference=False,
                      description="SFT plus an odds-ratio penalty, no reference model")

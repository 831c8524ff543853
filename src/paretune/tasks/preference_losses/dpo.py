"""DPO (Rafailov et al. 2023): raise the chosen answer's log-ratio to the reference above the
rejected one's. `loss_type` picks the penalty on beta times the margin of log-ratios: `sigmoid` (the
paper's, with `label_smoothing` the conservative DPO of Mitchell 2023), `hinge` (SLiC) or `ipo`
(Azar et al. 2023, on per-token averaged log-ratios as TRL does, squared distance to 1/(2 beta)).
Same numbers as TRL's DPOTrainer (tests/test_preference_losses.py).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.tasks.preference_losses.base import LossOptions, LossResult, PreferenceLoss, SequenceScores


class DpoOptions(LossOptions):
    name: Literal["dpo"] = "dpo"
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model (lower: "
                                               "further from it).")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="sigmoid (DPO), ipo or hinge.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed share of flipped labels "
                                                                  "(conservative DPO; sigmoid only).")


def dpo_loss(options: DpoOptions, scores: SequenceScores) -> LossResult:
    chosen_ratio = scores.chosen - scores.ref_logps[0::2]
    rejected_ratio = scores.rejected - scores.ref_logps[1::2]
    margin = options.beta * (chosen_ratio - rejected_ratio)
    if options.loss_type == "sigmoid":
        eps = options.label_smoothing
        losses = -(1 - eps) * F.logsigmoid(margin) - eps * F.logsigmoid(-margin)
    elif options.loss_type == "hinge":
        losses = torch.relu(1 - margin)
    else:
        per_token = (chosen_ratio / scores.tokens[0::2].clamp(min=1.0)
                     - rejected_ratio / scores.tokens[1::2].clamp(min=1.0))
        losses = (per_token - 1 / (2 * options.beta)) ** 2
    return LossResult(losses.mean(), options.beta * chosen_ratio.detach(), options.beta * rejected_ratio.detach())


LOSS = PreferenceLoss("dpo", DpoOptions, dpo_loss, needs_reference=True,
                      description="direct preference optimisation against a frozen reference")

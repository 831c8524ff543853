"""Preference losses: one module each, registered here by one line.

A loss is a pydantic options model (its `name` picks it in the `task.loss` section of a
preference run) and a function from per-sequence answer log-probs to the batch loss and rewards
(base.py). The preference task (tasks/preference.py) computes those log-probs the same way for
every loss; adding a loss is a module here and one line in LOSSES.
"""
from __future__ import annotations

from paretune.tasks.preference_losses import dpo, kto, orpo, simpo
from paretune.tasks.preference_losses.base import LossOptions, LossResult, PreferenceLoss, SequenceScores

LOSSES: dict[str, PreferenceLoss] = {m.LOSS.name: m.LOSS for m in (dpo, orpo, simpo, kto)}


def loss_options_types() -> tuple[type[LossOptions], ...]:
    return tuple(loss.options for loss in LOSSES.values())


__all__ = ["LOSSES", "LossOptions", "LossResult", "PreferenceLoss", "SequenceScores", "loss_options_types"]

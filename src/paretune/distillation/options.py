"""Distillation settings: how the student's loss weighs the labels against the teacher."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DistillOptions(BaseModel):
    """loss = hard_weight * task loss + soft_weight * T^2 * KL(teacher_T || student_T)
              + hidden_weight * MSE(student hidden states, teacher hidden states)

    The T^2 factor (Hinton, Vinyals and Dean, 2015) keeps the soft term's gradients the same
    size whatever the temperature, so the weights mean the same at T=1 and T=4.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Each field is a `paretune distill` option too (cli/settings_options.py), its description the help.
    # A higher temperature softens both distributions: the student sees more of the teacher's view
    # of the wrong classes.
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of the KL term.")
    soft_weight: float = Field(0.5, ge=0, description="Weight of T^2 * KL(teacher || student).")
    hard_weight: float = Field(0.5, ge=0, description="Weight of the ordinary loss against the labels.")
    hidden_weight: float = Field(0.0, ge=0, description="Weight of hidden-state matching (0 = off).")
    epochs: float = Field(3.0, gt=0, description="Training epochs of the student.")

    @model_validator(mode="after")
    def _some_loss(self) -> "DistillOptions":
        if self.soft_weight + self.hard_weight + self.hidden_weight == 0:
            raise ValueError("soft_weight, hard_weight and hidden_weight are all 0: nothing to train on")
        return self

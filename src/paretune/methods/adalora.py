"""AdaLoRA (Zhang et al. 2023): LoRA whose rank budget moves to the layers that matter, via peft.

Each update is P·Λ·Q (an SVD-like triplet). Training starts with `init_r` ranks per layer; after
a warm-up the least important singular values (by a smoothed gradient-times-weight score) are
masked to zero until the average rank is `target_r`, then the pattern is frozen for the final
phase. peft needs the run's total step count for that schedule, and `on_step` calls its
`update_and_allocate` after every optimizer step.

peft adds the orthogonality penalty on P and Q only to a loss the model computes itself, and
paretune's loop computes the task loss outside the model, so `orthogonality_loss` adds it through
the method's `extra_loss` hook: the paper's R(P, Q) = ||PᵀP - I||_F + ||QQᵀ - I||_F, averaged
over the adapted matrices and weighted by `orth_reg_weight`.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from paretune.methods import targets
from paretune.methods.base import Method, MethodContext, MethodOptions
from paretune.methods.lora import target_kwargs


class AdaLoraOptions(MethodOptions):
    name: Literal["adalora"] = "adalora"
    init_r: int = Field(12, ge=1, description="Rank every layer starts with.")
    target_r: int = Field(8, ge=1, description="Average rank left after budget reallocation.")
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="Share of steps before ranks are cut.")
    final_fraction: float = Field(0.2, ge=0, lt=1, description="Share of steps at the final ranks.")
    allocate_every: int = Field(1, ge=1, description="Steps between budget reallocations (deltaT).")
    beta1: float = Field(0.85, gt=0, lt=1, description="EMA factor of the importance score.")
    beta2: float = Field(0.85, gt=0, lt=1, description="EMA factor of its uncertainty.")
    orth_reg_weight: float = Field(0.5, ge=0, description="Weight of the orthogonality penalty on P and Q.")
    target_modules: list[str] | Literal["all-linear"] | None = None

    @model_validator(mode="after")
    def _budget(self) -> "AdaLoraOptions":
        if self.target_r > self.init_r:
            raise ValueError("method.target_r must not exceed method.init_r")
        if self.warmup_fraction + self.final_fraction >= 1:
            raise ValueError("method.warmup_fraction + method.final_fraction must leave steps to reallocate")
        return self


def schedule(options: AdaLoraOptions, total_steps: int) -> tuple[int, int]:
    """(tinit, tfinal) in steps; peft needs at least one step between them."""
    tinit = int(options.warmup_fraction * total_steps)
    tfinal = int(options.final_fraction * total_steps)
    tinit = min(tinit, max(total_steps - tfinal - 1, 0))
    return tinit, tfinal


def apply(model: torch.nn.Module, options: AdaLoraOptions, context: MethodContext) -> torch.nn.Module:
    import peft

    tinit, tfinal = schedule(options, context.total_steps)
    config = peft.AdaLoraConfig(
        init_r=options.init_r, target_r=options.target_r, lora_alpha=options.alpha,
        lora_dropout=options.dropout, tinit=tinit, tfinal=tfinal, deltaT=options.allocate_every,
        beta1=options.beta1, beta2=options.beta2, total_step=context.total_steps,
        orth_reg_weight=options.orth_reg_weight,
        **target_kwargs(model, options.target_modules, context, all_linear=False),  # query and value
    )
    return targets.wrap_with_peft(model, config)


def on_step(model: torch.nn.Module, step: int) -> None:
    tuner = model.base_model  # peft's AdaLoraModel
    config = tuner.peft_config[tuner.trainable_adapter_name]
    if step > config.total_step - config.tfinal and config.rank_pattern is None:
        # Resumed inside the final phase: the pattern fixed before the kill was not saved, but the
        # masked singular values were (as exact zeros), so read it back from them.
        settle_rank_pattern(model)
    tuner.update_and_allocate(step)


def orthogonality_loss(model: torch.nn.Module) -> torch.Tensor:
    """Distance of every adapter's P (lora_B) and Q (lora_A) from orthonormal, averaged."""
    tuner = model.base_model
    name = tuner.trainable_adapter_name
    weight = tuner.peft_config[name].orth_reg_weight
    total, count = None, 0
    for param_name, param in tuner.model.named_parameters():
        if not param.requires_grad or f".{name}" not in param_name:
            continue
        if "lora_A." in param_name:  # Q: rank x in_features, rows should be orthonormal
            gram = param @ param.T
        elif "lora_B." in param_name:  # P: out_features x rank, columns should be orthonormal
            gram = param.T @ param
        else:
            continue
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        term = torch.linalg.matrix_norm(gram - eye)
        total, count = (term if total is None else total + term), count + 1
    if count == 0 or weight == 0:
        return torch.zeros((), device=next(model.parameters()).device)
    return weight * total / count


def settle_rank_pattern(model: torch.nn.Module) -> None:
    """Make the rank pattern peft saves by match the weights: kept ranks are the non-zero ones.

    peft saves only the ranks its pattern keeps. After `load_best` restores the weights of an
    earlier step, the last pattern may drop ranks those weights still use; the export calls this
    so the saved adapter, the merged model and the evaluated model stay one and the same.
    """
    tuner = model.base_model
    config = tuner.peft_config[tuner.trainable_adapter_name]
    config.rank_pattern = {
        name: (param != 0).view(-1).tolist()
        for name, param in tuner.model.named_parameters() if "lora_E." in name
    }


METHOD = Method("adalora", AdaLoraOptions, apply, "LoRA with rank budget reallocated by importance (peft)",
                on_step=on_step, extra_loss=orthogonality_loss,
                lr_scale=10.0)

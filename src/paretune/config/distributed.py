"""The `distributed:` section of a run config: how many processes, and how they share the model.

Every strategy is one of accelerate's: `ddp` (each process holds the whole model, gradients are
averaged), `fsdp` (parameters, gradients and optimizer state sharded over the processes) and
`deepspeed` (ZeRO stage 2 or 3 through accelerate's DeepSpeed plugin). `auto` means DDP when
there is more than one process, or whatever `accelerate launch --config_file` configured when
that launcher started us (docs/distributed.md).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FsdpOptions(_Options):
    version: Literal[1, 2] = Field(2, description="FSDP2 (per-parameter sharding) unless a model needs FSDP1.")
    sharding: Literal["full_shard", "shard_grad_op"] = Field(
        "full_shard",
        description="full_shard: parameters too (like ZeRO-3); shard_grad_op: gradients and "
        "optimizer state only (like ZeRO-2), faster when the model fits on one device.",
    )
    auto_wrap: Literal["transformer", "size", "none"] = Field(
        "transformer", description="Shard unit: each transformer block, blocks of min_num_params, or the whole model."
    )
    min_num_params: int = Field(100_000_000, ge=1, description="auto_wrap=size: parameters per shard unit.")
    cpu_offload: bool = Field(False, description="Keep sharded parameters in CPU memory between uses.")
    activation_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")


class DeepSpeedOptions(_Options):
    zero_stage: Literal[2, 3] = Field(2, description="2: shard optimizer state and gradients; 3: parameters too.")
    offload_optimizer: Literal["none", "cpu"] = Field("none", description="Keep optimizer state in CPU memory.")
    offload_params: Literal["none", "cpu"] = Field("none", description="ZeRO-3: keep parameters in CPU memory.")
    config_file: str | None = Field(
        None, description="A DeepSpeed JSON config; its settings win over the ones above."
    )

    @model_validator(mode="after")
    def _params_offload_needs_stage_3(self) -> "DeepSpeedOptions":
        if self.offload_params != "none" and self.zero_stage != 3:
            raise ValueError("distributed.deepspeed.offload_params needs zero_stage: 3")
        return self


class DistributedConfig(_Options):
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto", description="auto: DDP, or what `accelerate launch` configured."
    )
    nproc: int = Field(
        1, ge=1, description="Processes `paretune train` starts on this machine (one per GPU); "
        "ignored under torchrun or accelerate launch, which set their own."
    )
    backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="Collective backend: auto = nccl on GPUs, gloo on CPU."
    )
    find_unused_parameters: bool = Field(
        False, description="DDP: allow trainable parameters that some steps do not use (slower)."
    )
    timeout_s: int = Field(1800, ge=10, description="Seconds a process waits for the others at a collective.")
    fsdp: FsdpOptions = FsdpOptions()
    deepspeed: DeepSpeedOptions = DeepSpeedOptions()

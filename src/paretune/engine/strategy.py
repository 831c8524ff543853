"""From the `distributed:` section to an accelerate Accelerator: DDP, FSDP or DeepSpeed ZeRO.

The section is the one source of settings, except with `strategy: auto` under `accelerate launch
--config_file ...`: then the launcher's settings (which accelerate passes in ACCELERATE_*
environment variables) are used as they are. An explicit strategy that contradicts the launcher
is an error rather than a silent winner.
"""
from __future__ import annotations

import functools
import os
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

from paretune.config.schema import Config, TrainingConfig
from paretune.config.distributed import DeepSpeedOptions, DistributedConfig, FsdpOptions
from paretune.engine.precision import ACCELERATE_NAMES, resolve_precision
from paretune.errors import ConfigError

SHARDED = ("fsdp", "deepspeed")
# What `accelerate launch` sets when its config file asks for a sharded strategy.
LAUNCHER_FLAGS = {"fsdp": "ACCELERATE_USE_FSDP", "deepspeed": "ACCELERATE_USE_DEEPSPEED"}
FSDP_WRAP = {"transformer": "transformer_based_wrap", "size": "size_based_wrap", "none": "no_wrap"}


def build_accelerator(config: Config) -> Accelerator:
    dist = config.distributed
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(config.training.precision, device_type)
    strategy = resolve_strategy(dist, device_type)
    if dist.backend == "nccl" and device_type != "cuda":
        raise ConfigError("distributed.backend: nccl needs CUDA GPUs; use auto or gloo on a CPU")
    handlers = [
        InitProcessGroupKwargs(backend=None if dist.backend == "auto" else dist.backend,
                               timeout=timedelta(seconds=dist.timeout_s)),
        DistributedDataParallelKwargs(find_unused_parameters=dist.find_unused_parameters),  # DDP only
    ]
    plugins = {}
    if strategy == "fsdp":
        plugins["fsdp_plugin"] = fsdp_plugin(dist.fsdp)
    elif strategy == "deepspeed":
        plugins["deepspeed_plugin"] = deepspeed_plugin(dist.deepspeed, config.training)
    return Accelerator(mixed_precision=ACCELERATE_NAMES[precision], cpu=device_type == "cpu",
                       kwargs_handlers=handlers, **plugins)


@functools.cache
def launcher_strategy() -> str | None:
    """The sharded strategy `accelerate launch` was configured with, if any. Read once, before
    any Accelerator exists: accelerate sets the same variables itself when given a plugin."""
    for name, variable in LAUNCHER_FLAGS.items():
        if os.environ.get(variable, "false").lower() == "true":
            return name
    return None


def resolve_strategy(dist: DistributedConfig, device_type: str) -> str:
    """'ddp', 'fsdp', 'deepspeed', or 'launcher' (use what accelerate launch configured)."""
    launcher = launcher_strategy()
    if dist.strategy == "auto":
        return "launcher" if launcher else "ddp"
    if launcher and launcher != dist.strategy:
        raise ConfigError(
            f"distributed.strategy is {dist.strategy} but accelerate launch was configured for {launcher}: "
            "set distributed.strategy: auto to use the launcher's settings, or make them agree"
        )
    if dist.strategy in SHARDED and device_type != "cuda":
        raise ConfigError(
            f"distributed.strategy: {dist.strategy} needs CUDA GPUs (accelerate shards models only "
            "there); on a CPU use ddp"
        )
    return dist.strategy


def fsdp_plugin(options: FsdpOptions):
    from accelerate.utils import FullyShardedDataParallelPlugin

    full = options.sharding == "full_shard"
    extra = {"min_num_params": options.min_num_params} if options.auto_wrap == "size" else {}
    if options.version == 1:
        # Original parameters stay visible, so frozen and trainable ones (PEFT, freeze) can
        # share a shard unit and the optimizer sees parameters by their own names.
        extra["use_orig_params"] = True
    return FullyShardedDataParallelPlugin(
        fsdp_version=options.version,
        reshard_after_forward=full if options.version == 2 else ("FULL_SHARD" if full else "SHARD_GRAD_OP"),
        auto_wrap_policy=FSDP_WRAP[options.auto_wrap],
        cpu_offload=options.cpu_offload,
        activation_checkpointing=options.activation_checkpointing,
        **extra,
    )


def deepspeed_plugin(options: DeepSpeedOptions, training: TrainingConfig):
    from accelerate.utils import DeepSpeedPlugin

    if options.config_file:
        plugin = DeepSpeedPlugin(hf_ds_config=options.config_file)
    else:
        plugin = DeepSpeedPlugin(
            zero_stage=options.zero_stage,
            gradient_clipping=training.max_grad_norm or 0.0,  # DeepSpeed clips inside its step
            offload_optimizer_device=options.offload_optimizer,
            offload_param_device=options.offload_params,
            zero3_init_flag=False,  # the model is loaded whole, then partitioned by prepare
            zero3_save_16bit_model=True,  # so ZeRO-3 weights can be gathered for saving
        )
    ds = plugin.deepspeed_config
    # The loop accumulates micro-batches itself and tells DeepSpeed which one ends the step.
    ds["gradient_accumulation_steps"] = 1
    # Batches come from paretune's plan, not a prepared DataLoader; DeepSpeed only reports with it.
    if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        ds["train_micro_batch_size_per_gpu"] = 1
    # Our AdamW, also when its state is offloaded to the CPU (DeepSpeed wants its own CPU Adam).
    ds.setdefault("zero_force_ds_cpu_optimizer", False)
    return plugin

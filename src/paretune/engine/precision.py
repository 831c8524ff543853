"""Pick the numeric precision for the device.

`auto` means bf16 autocast on GPUs with bf16, fp16 with loss scaling on older GPUs, and fp32 on
CPUs: bf16 autocast was measured 8x slower than fp32 on an AVX2 CPU without bf16 instructions.
"""
from __future__ import annotations

import torch

from paretune.errors import ConfigError

ACCELERATE_NAMES = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def precision_name(mixed_precision: str) -> str:
    """paretune's name (fp32, bf16, fp16) for accelerate's `mixed_precision` ("no" means fp32)."""
    return {accelerate: ours for ours, accelerate in ACCELERATE_NAMES.items()}.get(mixed_precision, mixed_precision)


def resolve_precision(requested: str, device_type: str) -> str:
    if requested != "auto":
        if requested == "fp16" and device_type == "cpu":
            raise ConfigError("training.precision=fp16 needs a GPU; use fp32 (or bf16) on a CPU")
        return requested
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"

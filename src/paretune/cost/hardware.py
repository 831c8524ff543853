"""Published peak figures of the devices `paretune plan` scales to, and what fraction of the peak
fine-tuning really reaches.

Peaks are dense (no 2:4 sparsity) 16-bit tensor-core TFLOP/s, the precision `training.precision:
auto` trains in on these GPUs (bf16; fp16 on the T4). Read from NVIDIA's datasheets, 2026-11:
  A100 SXM 80 GB: 312 TF bf16, 80 GB   https://www.nvidia.com/en-us/data-center/a100/
  H100 SXM:       989 TF bf16, 80 GB   https://www.nvidia.com/en-us/data-center/h100/
  H200 SXM:       989 TF bf16, 141 GB  https://www.nvidia.com/en-us/data-center/h200/
  L4:             121 TF bf16, 24 GB   https://www.nvidia.com/en-us/data-center/l4/
  T4:              65 TF fp16, 16 GB   https://www.nvidia.com/en-us/data-center/tesla-t4/
  A10G (AWS G5):   ~70 TF bf16, 24 GB  not on an NVIDIA datasheet; the A10's 125 TF at the A10G's
                                       lower clocks, as commonly quoted for G5 instances (approx.)

`efficiency` is the share of the peak a fine-tuning step reaches (model FLOPs utilisation). It
is an assumption, not a measurement: large-model training reaches 0.35-0.5; a small encoder such
as MiniLM (width 384) runs small matmuls and reaches far less, hence 0.2 here. `step_overhead_s`
is the per-step time that does not scale with tokens (optimizer update, clipping, kernel
launches, Python). Rows scaled with these figures are marked `scaled` in the plan; only the
device the plan runs on is `measured`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from paretune.cost.device import Device


@dataclass(frozen=True)
class DeviceSpec:
    key: str  # what --devices names
    cuda_name: str  # a CUDA device name of this GPU: matched against prices.yaml's `gpu` patterns
    peak_tflops: float
    memory_gib: float
    efficiency: float = 0.2
    step_overhead_s: float = 0.02


DEVICES: dict[str, DeviceSpec] = {spec.key: spec for spec in (
    DeviceSpec("t4", "Tesla T4", 65.0, 16.0),
    DeviceSpec("l4", "NVIDIA L4", 121.0, 24.0),
    DeviceSpec("a10g", "NVIDIA A10G", 70.0, 24.0),
    DeviceSpec("a100", "NVIDIA A100-SXM4-80GB", 312.0, 80.0),
    DeviceSpec("h100", "NVIDIA H100 80GB HBM3", 989.0, 80.0, step_overhead_s=0.015),
    DeviceSpec("h200", "NVIDIA H200", 989.0, 141.0, step_overhead_s=0.015),
)}

# A little of every GPU's memory goes to the CUDA context and the allocator's fragmentation.
USABLE_MEMORY = 0.9


def device_key(device: Device) -> str:
    """The --devices key of the device this process runs on ("cpu", or a GPU's key when known)."""
    if device.type != "cuda":
        return "cpu"
    for spec in DEVICES.values():
        if re.search(spec.key, device.name, re.IGNORECASE):
            return spec.key
    return re.sub(r"[^a-z0-9]+", "-", device.name.lower()).strip("-")

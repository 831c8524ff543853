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

from paretune.cost.device import Device, cpuinfo_text


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


# --- the peak a training step is measured against (cost.json's flops.share_of_peak) -------------
# fp32 lanes of the widest fused multiply-add the CPU's flags advertise (`fma`: FMA3 on 256-bit AVX2).
_FMA_LANES = (("avx512f", 16), ("fma", 8))
# FMA units per core: two on Intel cores since Haswell (one on some Xeon Silver/Bronze with
# AVX-512) and on AMD cores since Zen 2. An assumption: the flags do not say.
CPU_FMA_PIPES = 2


@dataclass(frozen=True)
class Peak:
    flops_per_s: float
    basis: str  # how it was computed, for cost.json and the model card


def cpu_peak(cpuinfo: str, cores: int) -> Peak | None:
    """The fp32 FMA peak of `cores` cores: cores x FMA pipes x fp32 lanes x 2 FLOP x clock, the
    clock being the highest `cpu MHz` in /proc/cpuinfo (on a VM the nominal clock; boost clocks
    are not counted, so a step can exceed it). None when the text names no FMA or no clock."""
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)]
    found = set(flags.group(1).split()) if flags else set()
    widest = next(((flag, lanes) for flag, lanes in _FMA_LANES if flag in found), None)
    if widest is None or not mhz or cores < 1:
        return None
    flag, lanes = widest
    ghz = max(mhz) / 1000
    return Peak(cores * CPU_FMA_PIPES * lanes * 2 * ghz * 1e9,
                f"fp32 FMA: {cores} cores x {CPU_FMA_PIPES} FMA pipes x {lanes} lanes ({flag}) x 2 FLOP x "
                f"{ghz:.3g} GHz (cpu MHz, /proc/cpuinfo)")


def training_peak(device: Device, precision: str, cores: int) -> Peak | None:
    """The peak of the device a run trained on, in the precision it trained in: the CPU's fp32 FMA
    peak, or a listed GPU's 16-bit tensor-core peak (for bf16/fp16 runs; none listed for fp32)."""
    if device.type == "cpu":
        return cpu_peak(cpuinfo_text(), cores) if precision == "fp32" else None
    spec = DEVICES.get(device_key(device))
    if spec is None or precision not in ("bf16", "fp16"):
        return None
    return Peak(spec.peak_tflops * 1e12 * device.count, f"{spec.peak_tflops:g} TFLOP/s {precision} dense per "
                f"{spec.key} (datasheet, cost/hardware.py) x {device.count}")

"""What the process runs on, in the words a price table and a reader use."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Device:
    type: str  # "cuda" or "cpu" (torch's device type)
    name: str  # "NVIDIA H100 80GB HBM3", "AMD EPYC 7B13"
    count: int  # devices the run uses (processes, one device each)
    vcpus: int  # CPU cores this process may run on: what a CPU instance is priced by

    def as_dict(self) -> dict:
        return {"device": self.type, "device_name": self.name, "device_count": self.count, "vcpus": self.vcpus}


def describe_device(device: torch.device | str, count: int = 1) -> Device:
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_name()
    return Device(device.type, name, count, host_vcpus())


def cpuinfo_text() -> str:
    """/proc/cpuinfo (Linux), or "" where there is none."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.read_text(errors="replace") if cpuinfo.is_file() else ""


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (Linux); platform's guess elsewhere."""
    for line in cpuinfo_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def host_vcpus() -> int:
    # A container or taskset may grant fewer cores than the host has; those are what we pay for.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def reset_peak_host_memory() -> bool:
    """Restart the process's peak-RSS counter (Linux), so a peak read later covers only what
    follows: in a sweep or a benchmark after training, the earlier work's peak must not count.
    Returns False where the OS offers no reset (the peak then covers the whole process)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5 = reset the resident-set high-water mark (proc(5))
        return True
    except OSError:
        return False

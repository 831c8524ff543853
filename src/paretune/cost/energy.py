"""GPU energy from NVML's cumulative energy counter; None wherever it cannot be read.

NVML (the library behind nvidia-smi) keeps a per-GPU energy total in millijoules since the driver
loaded (Volta and newer). Reading it before and after a run gives the energy the GPUs drew, idle
time and other processes on the same GPU included. The Python binding is the `nvidia-ml-py`
package (module `pynvml`); without it, or on a CPU, energy is recorded as null, not guessed.
CPU energy (RAPL) is left out: its counters are root-only on current Linux kernels.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger("paretune")

MJ_PER_KWH = 3.6e9


class EnergyMeter:
    """Reads the counters of the run's GPUs (cuda:0..count-1) at construction; `read()` gives kWh since."""

    def __init__(self, device: torch.device | str, count: int = 1):
        self._nvml = None
        self._handles: list = []
        self._start: list[int] = []
        if torch.device(device).type != "cuda":
            return
        try:
            import pynvml
        except ImportError:
            log.info("energy not metered: pip install nvidia-ml-py to read the GPUs' energy counters")
            return
        try:
            pynvml.nvmlInit()
            indices = range(min(count, torch.cuda.device_count()))
            self._handles = [_handle(pynvml, i) for i in indices]
            self._start = [pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
            self._nvml = pynvml
        except pynvml.NVMLError as err:  # no driver access, or a GPU older than Volta
            log.info("energy not metered: NVML cannot read the energy counter (%s)", err)
            self._handles = []

    @property
    def source(self) -> str | None:
        return "nvml" if self._nvml is not None else None

    def read(self) -> float | None:
        if self._nvml is None:
            return None
        try:
            now = [self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
        except self._nvml.NVMLError as err:
            log.info("energy not metered: NVML read failed (%s)", err)
            return None
        return sum(b - a for a, b in zip(self._start, now)) / MJ_PER_KWH


def _handle(pynvml, index: int):
    """NVML numbers GPUs by the machine, torch by CUDA_VISIBLE_DEVICES: match them by PCI address."""
    props = torch.cuda.get_device_properties(index)
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    address = f"{props.pci_domain_id:04x}:{bus:02x}:{props.pci_device_id:02x}.0"
    try:
        return pynvml.nvmlDeviceGetHandleByPciBusId(address)
    except pynvml.NVMLError:
        return pynvml.nvmlDeviceGetHandleByIndex(index)

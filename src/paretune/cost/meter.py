"""The cost meter: started before training, it turns a run's timings and counters into cost.json.

Starting it early matters twice: an unknown price name fails before any work is done, and the
peak-memory and energy counters cover exactly this run (a sweep trains many in one process).
"""
from __future__ import annotations

import time
from typing import Any

import torch
from accelerate import Accelerator

from paretune.config.schema import CostConfig
from paretune.cost.device import describe_device, reset_peak_host_memory
from paretune.cost.energy import EnergyMeter
from paretune.cost.flops import training_flops
from paretune.cost.hardware import training_peak
from paretune.cost.prices import resolve_price
from paretune.engine.checkpoint import LoopState
from paretune.engine.precision import precision_name
from paretune.resources import PeakMemory


class CostMeter:
    def __init__(self, config: CostConfig, accelerator: Accelerator):
        self.device = describe_device(accelerator.device, accelerator.num_processes)
        self.price = resolve_price(config, self.device)
        self._started = time.perf_counter()
        reset_peak_host_memory()
        self.memory = PeakMemory()
        self.energy = EnergyMeter(accelerator.device, accelerator.num_processes)

    def elapsed_s(self) -> float:
        """Seconds since the meter started (the run's setup so far, before training)."""
        return time.perf_counter() - self._started

    def finish(self, timings: dict[str, float], state: LoopState, model: torch.nn.Module,
               accelerator: Accelerator) -> dict[str, Any]:
        """cost.json: time, device, tokens, memory, FLOPs, energy and dollars of the run."""
        phases = dict(timings)
        # Model loading and method setup fall between the timed phases; they are paid for too.
        # (On resume, train_s holds earlier sessions' time, so this share can come out as 0.)
        phases["setup_s"] = max(0.0, time.perf_counter() - self._started - sum(timings.values()))
        wall = sum(phases.values())
        device_hours = wall * self.device.count / 3600
        train_s = max(timings["train_s"], 1e-9)
        flops = training_flops(model, state.padded_tokens_seen, state.samples_seen)
        flops["achieved_flops_per_s"] = _significant(flops["train"] / train_s)
        precision = precision_name(accelerator.mixed_precision)  # accelerate's "no" is fp32
        flops.update(_share_of_peak(self.device, precision, flops["achieved_flops_per_s"]))
        energy_kwh = self.energy.read()
        usd = device_hours * self.price.usd_per_hour if self.price else None
        return {
            **self.device.as_dict(),
            "precision": precision,
            "phases_s": {k: round(v, 3) for k, v in phases.items()},
            "wall_s": round(wall, 3),
            "device_hours": _significant(device_hours),  # short runs: a few 1e-5 h, keep the digits
            "train_samples": state.samples_seen,
            "train_tokens": state.tokens_seen,
            "train_padded_tokens": state.padded_tokens_seen,
            "padding_fraction": round(1 - state.tokens_seen / max(state.padded_tokens_seen, 1), 4),
            "train_samples_per_s": round(state.samples_seen / train_s, 2),
            "train_tokens_per_s": round(state.tokens_seen / train_s, 1),
            **self.memory.read(),
            "flops": flops,
            "energy_kwh": None if energy_kwh is None else round(energy_kwh, 6),
            "energy_source": self.energy.source,
            "price": self.price.as_dict() if self.price else None,
            "usd": None if usd is None else _significant(usd),
        }


def _share_of_peak(device, precision: str, achieved: float) -> dict[str, Any]:
    """The device's peak in the run's precision (cost/hardware.py) and the share of it reached."""
    cores = min(torch.get_num_threads() * device.count, device.vcpus or torch.get_num_threads())
    peak = training_peak(device, precision, cores)
    if peak is None:
        return {"peak_flops_per_s": None, "peak_basis": None, "share_of_peak": None}
    return {"peak_flops_per_s": _significant(peak.flops_per_s), "peak_basis": peak.basis,
            "share_of_peak": round(achieved / peak.flops_per_s, 4)}


def _significant(value: float, digits: int = 4) -> float:
    """Round to significant digits: dollars of a tiny run are 1e-5, FLOP/s are 1e12."""
    return float(f"{value:.{digits}g}")

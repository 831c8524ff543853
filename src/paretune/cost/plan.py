"""A run's plan: peak memory, time and dollars, estimated before (or at the start of) training.

Two sources feed it. On this machine a few real training steps give seconds per padded token
(`StepTimer`, fed by the Trainer's on_step hook): a row built from them is `measured`. Other
devices are `scaled`: the run's FLOPs (cost/flops.py) over the device's published peak times a
realistic efficiency, plus a per-step overhead (cost/hardware.py). Memory is counted, not timed:
fp32 weights, gradients and optimizer state of the trainable parameters, and the activations kept
for backward at the largest planned batch; on a CPU the process's resident memory before
training (runtime, data, the loaded model) is added, since that is what the meter records.
Each row also holds `max_context`: the longest sequence a training step fits in that device's
memory (cost/context.py).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import psutil
import torch

from paretune.cost.context import ContextModel, host_memory_mib
from paretune.cost.device import Device
from paretune.cost.flops import parameter_flops
from paretune.cost.hardware import DEVICES, USABLE_MEMORY, DeviceSpec, device_key

MIB = 2**20
WARMUP_STEPS = 1  # the first step allocates buffers and warms kernels: not timed


class StepTimer:
    """Seconds per padded token from the first optimizer steps of a Trainer (its on_step hook)."""

    def __init__(self, steps: int = 10):
        self.steps = steps
        self.marks: list[tuple[float, int]] = []  # (time, padded tokens seen) after each step
        self.trainer = None

    def on_step(self, model, step: int) -> None:
        if self.trainer is not None and len(self.marks) < self.steps + WARMUP_STEPS:
            self.marks.append((time.perf_counter(), self.trainer.state.padded_tokens_seen))

    @property
    def done(self) -> bool:
        return len(self.marks) >= self.steps + WARMUP_STEPS

    def seconds_per_token(self) -> float | None:
        """The median step's seconds per padded token: one step slowed by something else on the
        machine (a page-fault burst, another process) moves a mean of a few steps by 10-30% and
        the whole run's estimate with it; the median ignores it."""
        if len(self.marks) < WARMUP_STEPS + 2:
            return None
        timed = self.marks[WARMUP_STEPS:]
        rates = [(t1 - t0) / max(n1 - n0, 1) for (t0, n0), (t1, n1) in zip(timed, timed[1:])]
        return float(np.median(rates))


@dataclass
class Workload:
    """What the configured run will compute, from its batch plan and model (no timing)."""

    method: str
    steps: int
    steps_per_epoch: int
    epochs: float
    run_padded_tokens: int
    run_samples: int
    largest_batch_tokens: int
    longest_row: int
    evaluations: int
    eval_padded_tokens: int  # one pass over the validation (and, at the end, test) set
    flops_per_token: int
    forward_flops_per_token: int
    total_params: int
    trainable_params: int
    activation_layers: float  # transformer layers that keep activations for backward
    hidden: int
    heads: int
    optimizer: str


def workload(trainer, model: torch.nn.Module, method: str, eval_lengths: list[np.ndarray]) -> Workload:
    plan, cfg = trainer.plan, trainer.config
    shares = [plan.share(i) for i in range(len(plan))]
    epoch_padded = sum(s.padded_tokens for s in shares)
    epoch_samples = sum(s.rows for s in shares)
    fraction = trainer.total_steps / max(trainer.steps_per_epoch, 1)  # epochs, from steps
    split = parameter_flops(model)
    dense = split["trainable_params"] + split["frozen_params"]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = getattr(model, "config", None)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    evaluations = _evaluations(cfg, trainer.total_steps, trainer.steps_per_epoch)
    return Workload(
        method=method, steps=trainer.total_steps, steps_per_epoch=trainer.steps_per_epoch,
        epochs=round(fraction, 4), run_padded_tokens=int(epoch_padded * fraction),
        run_samples=int(epoch_samples * fraction),
        largest_batch_tokens=max((s.padded_tokens for s in shares), default=0),
        longest_row=int(plan.lengths.max(initial=1)),
        evaluations=evaluations if eval_lengths else 0,
        eval_padded_tokens=sum(_eval_padded(lengths, cfg.eval_batch_size) for lengths in eval_lengths[:1]),
        flops_per_token=split["flops_per_token"], forward_flops_per_token=2 * dense,
        total_params=total, trainable_params=trainable,
        activation_layers=layers * _trained_share(model), hidden=int(getattr(config, "hidden_size", 0) or 0),
        heads=int(getattr(config, "num_attention_heads", 1) or 1), optimizer=cfg.optimizer,
    )


def _evaluations(cfg, total_steps: int, steps_per_epoch: int) -> int:
    """Passes over the validation set: the periodic ones, plus one at the last step when that is not
    one of them (the loop evaluates the last step). The final score reuses that last evaluation
    (`Trainer.scored_final_weights`), so it costs no pass of its own, unless the best weights come
    from an earlier step, which a plan cannot know: it assumes they do not."""
    every = max(steps_per_epoch, 1) if cfg.eval_every == "epoch" else cfg.eval_every
    return total_steps // every + (1 if total_steps % every else 0)


def _eval_padded(lengths: np.ndarray, batch_size: int) -> int:
    ordered = np.sort(lengths)
    return int(sum(len(chunk) * chunk.max() for chunk in np.array_split(ordered, max(1, math.ceil(len(ordered) / batch_size)))
                   if len(chunk)))


def _trained_share(model: torch.nn.Module) -> float:
    """Share of the dense weights at or above the lowest trainable one: the layers whose
    activations autograd keeps (nothing below the first trainable weight needs a gradient)."""
    below = total = 0
    seen_trainable = False
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if not own or isinstance(module, torch.nn.Embedding):
            continue
        size = sum(p.numel() for p in own)
        total += size
        seen_trainable = seen_trainable or any(p.requires_grad for p in own)
        below += 0 if seen_trainable else size
    prompt = getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False)
    return 1.0 if prompt or not total else 1 - below / total


def memory_parts(work: Workload, activation_bytes: int) -> dict[str, float]:
    """MiB of training state: fp32 weights (masters), gradients, optimizer moments, activations.

    Activations per token and layer: (34 x width + 5 x heads x sequence) bytes in 16 bits
    (Korthikanti et al. 2022, "Reducing Activation Recomputation", with dropout), at the largest
    planned batch; x2 in fp32."""
    moments = 8 if work.optimizer == "adamw" else 4
    per_token_layer = (34 * work.hidden + 5 * work.heads * work.longest_row) * activation_bytes / 2
    activations = work.largest_batch_tokens * work.activation_layers * per_token_layer
    return {
        "weights_mib": round(4 * work.total_params / MIB, 1),
        "gradients_mib": round(4 * work.trainable_params / MIB, 1),
        "optimizer_mib": round(moments * work.trainable_params / MIB, 1),
        "activations_mib": round(activations / MIB, 1),
    }


def current_rss_mib() -> float:
    return psutil.Process().memory_info().rss / MIB


@dataclass
class Measured:
    """What this machine measured: seconds per padded token of training, host memory before
    training (CPU), and the seconds spent before training (data, model, method)."""

    device: Device
    seconds_per_token: float
    baseline_rss_mib: float
    setup_s: float
    peak_memory_mib: float | None = None  # measured at the planned shapes (cost/calibrate.py)
    eval_seconds_per_token: float | None = None  # timed on the largest evaluation batch (idem)
    context: ContextModel | None = None  # what grows with sequence length, counted (cost/context.py)


def estimate_here(work: Workload, measured: Measured, usd_per_hour: float | None,
                  context_memory_mib: float | None = None) -> dict:
    """This device's row, from measured step time; `context_memory_mib` sizes `max_context` for
    that much memory instead of the device's."""
    train_s = measured.seconds_per_token * work.run_padded_tokens
    eval_spt = measured.eval_seconds_per_token
    if eval_spt is None:  # not timed (the in-run plan): a forward pass's share of a training step's FLOPs
        eval_spt = measured.seconds_per_token * work.forward_flops_per_token / max(work.flops_per_token, 1)
    eval_s = eval_spt * work.eval_padded_tokens * work.evaluations
    if measured.device.type == "cuda":
        parts = memory_parts(work, activation_bytes=2)
        peak = sum(parts.values())
        capacity = torch.cuda.get_device_properties(0).total_memory / MIB * USABLE_MEMORY
    else:
        parts = {**memory_parts(work, activation_bytes=4), "weights_mib": 0.0}  # weights are in the RSS
        parts["process_mib"] = round(measured.baseline_rss_mib, 1)
        peak = sum(parts.values())
        capacity = psutil.virtual_memory().total / MIB
    parts["counted_peak_mib"] = round(peak, 1)
    if measured.peak_memory_mib is not None:
        peak = measured.peak_memory_mib
    row = _row(work, device_key(measured.device), "measured", train_s, eval_s, measured.setup_s, parts, peak,
               capacity, usd_per_hour)
    row["how"] = ("time from steps timed on this machine; peak memory "
                  + ("measured at the largest planned batches" if measured.peak_memory_mib is not None
                     else "counted (weights, gradients, optimizer state, activations)"))
    if measured.context is not None:
        on_gpu = measured.device.type == "cuda"
        # Fixed (not growing with length): on a CPU the resident process (weights in it) and the
        # optimizer moments; on a GPU weights and moments. Gradients peak apart (cost/context.py).
        fixed = sum(parts[k] for k in ("weights_mib", "optimizer_mib", "process_mib") if k in parts)
        memory = context_memory_mib or (capacity if on_gpu else host_memory_mib())
        row["max_context"] = measured.context.largest(memory, fixed, 0.5 if on_gpu else 1.0, parts["gradients_mib"])
    return row


def estimate_scaled(work: Workload, spec: DeviceSpec, setup_s: float, usd_per_hour: float | None,
                    context: ContextModel | None = None, context_memory_mib: float | None = None) -> dict:
    """Another device's row: FLOPs over its peak x efficiency, plus per-step overhead."""
    rate = spec.peak_tflops * 1e12 * spec.efficiency
    train_s = work.flops_per_token * work.run_padded_tokens / rate + work.steps * spec.step_overhead_s
    eval_s = work.forward_flops_per_token * work.eval_padded_tokens * work.evaluations / rate
    parts = memory_parts(work, activation_bytes=2)
    row = _row(work, spec.key, "scaled", train_s, eval_s, setup_s, parts, sum(parts.values()),
               spec.memory_gib * 1024 * USABLE_MEMORY, usd_per_hour)
    row["how"] = (f"scaled, not calibrated: FLOP model over the published {spec.peak_tflops:g} TFLOP/s peak "
                  f"x {spec.efficiency:g} assumed efficiency; memory counted, not measured")
    if context is not None:  # activations counted here in fp32, held in bf16 there
        fixed = parts["weights_mib"] + parts["optimizer_mib"]
        memory = context_memory_mib or spec.memory_gib * 1024 * USABLE_MEMORY
        row["max_context"] = context.largest(memory, fixed, 0.5, parts["gradients_mib"])
    return row


def _row(work: Workload, device: str, basis: str, train_s: float, eval_s: float, setup_s: float,
         parts: dict, peak: float, capacity: float, usd_per_hour: float | None) -> dict:
    time_s = train_s + eval_s + setup_s
    return {
        "method": work.method, "device": device, "basis": basis,
        "time_s": round(time_s, 2), "train_s": round(train_s, 2), "eval_s": round(eval_s, 2),
        "setup_s": round(setup_s, 2),
        "epoch_s": round(train_s / max(work.epochs, 1e-9), 2),
        "peak_memory_mib": round(peak, 1), "memory": parts, "fits": bool(peak <= capacity),
        "usd_per_hour": usd_per_hour,
        "usd": None if usd_per_hour is None else float(f"{time_s / 3600 * usd_per_hour:.4g}"),
        "steps": work.steps, "train_flops": work.flops_per_token * work.run_padded_tokens,
    }


def workload_dict(work: Workload) -> dict:
    return asdict(work)


def scaled_specs(keys: list[str]) -> list[DeviceSpec]:
    return [DEVICES[k] for k in keys if k in DEVICES]

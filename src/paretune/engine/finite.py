"""Skipping optimizer steps whose loss is NaN/inf without a host sync on every step.

The plain check reads the loss on the host before backward (`bool(torch.isfinite(loss))`), which
on a GPU stalls the CPU until the step's forward pass has finished, every step: the CPU can no
longer queue the next kernels ahead. The deferred check keeps the verdict on the device instead:
the fused AdamW/SGD kernels take a `found_inf` tensor (the hook torch's GradScaler uses) and
leave weights, moments and step counts untouched when it is non-zero. The flags are read back
in one sync every `every` steps (and before an evaluation, a checkpoint or the end), which is when
skipped steps are counted, reported, and a streak of them stops training.

It needs a fused optimizer (`_step_supports_amp_scaling`) and no fp16 loss scaler (which owns
`found_inf` itself). `training.finite_check: auto` uses it on CUDA when both hold.
"""
from __future__ import annotations

import torch


def deferred_supported(optimizer, accelerator) -> bool:
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    fused = any(group.get("fused") for group in inner.param_groups)
    return fused and getattr(inner, "_step_supports_amp_scaling", False) and accelerator.scaler is None


def use_deferred(mode: str, optimizer, accelerator) -> bool:
    if mode == "step":
        return False
    supported = deferred_supported(optimizer, accelerator)
    if mode == "deferred" and not supported:
        from paretune.errors import ConfigError

        raise ConfigError("training.finite_check: deferred needs a fused optimizer (adamw on CPU or CUDA) "
                          "and no fp16 loss scaling; use auto or step")
    return supported and (mode == "deferred" or accelerator.device.type == "cuda")


class DeferredFiniteCheck:
    """Per-step non-finite flags kept on the device, resolved in batches."""

    def __init__(self, optimizer, accelerator, every: int):
        self.inner = getattr(optimizer, "optimizer", optimizer)
        self.acc, self.every = accelerator, max(1, every)
        self.flag: torch.Tensor | None = None  # this step's: > 0 when any micro-batch was not finite
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step number, flag)

    def observe(self, loss: torch.Tensor) -> torch.Tensor:
        """Note one micro-batch's loss; returns it with non-finite values zeroed for running means."""
        finite = torch.isfinite(loss.detach())
        bad = (~finite).float().reshape(1)
        self.flag = bad if self.flag is None else self.flag + bad
        return torch.where(finite, loss.detach(), torch.zeros_like(loss.detach()))

    def arm(self) -> None:
        """Before optimizer.step: every process skips together when any of them saw a bad loss."""
        flag = self.flag if self.flag is not None else torch.zeros(1, device=self.acc.device)
        if self.acc.num_processes > 1:
            flag = self.acc.reduce(flag, reduction="sum")
        self.inner.found_inf = flag.clamp(max=1.0).reshape(())
        self.flag = flag

    def finish_step(self, step: int) -> bool:
        """After the step: keep its flag; True when it is time to read the flags back."""
        self.pending.append((step, self.flag))
        self.flag = None
        self.inner.found_inf = None
        return len(self.pending) >= self.every

    def resolve(self) -> list[tuple[int, bool]]:
        """(step, skipped) for every step since the last call, in one device-to-host copy."""
        if not self.pending:
            return []
        flags = torch.cat([f.reshape(1) for _, f in self.pending]).cpu().tolist()
        steps = [s for s, _ in self.pending]
        self.pending = []
        return [(s, f > 0) for s, f in zip(steps, flags)]

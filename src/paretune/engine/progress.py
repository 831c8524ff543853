"""Progress: a live bar with loss, lr, throughput and ETA on a terminal; plain lines elsewhere.

Loss values stay on the device and are summed there; they are read (a device sync) only when a
line is shown, not every step.
"""
from __future__ import annotations

import sys
import time

import torch
from tqdm.auto import tqdm


class Progress:
    def __init__(self, total_steps: int, log_every: int, enabled: bool = True):
        self.total, self.log_every, self.enabled = total_steps, log_every, enabled
        self.interactive = enabled and sys.stderr.isatty()
        self.bar = None
        self._loss_sum: torch.Tensor | None = None
        self._loss_n = 0
        self._window_sum: torch.Tensor | None = None
        self._window_n = 0
        self._t0 = time.perf_counter()
        self._samples0 = 0
        self._step0 = 0

    def start(self, step: int) -> None:
        self._t0, self._step0 = time.perf_counter(), step
        if self.interactive:
            self.bar = tqdm(total=self.total, initial=step, desc="train", unit="step", dynamic_ncols=True)

    def add_loss(self, loss: torch.Tensor) -> None:
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        self._window_sum = loss if self._window_sum is None else self._window_sum + loss
        self._loss_n += 1
        self._window_n += 1

    def take_mean_loss(self) -> float | None:
        """Mean training loss since the last call (for the metrics log)."""
        if not self._loss_n:
            return None
        value = float(self._loss_sum) / self._loss_n
        self._loss_sum, self._loss_n = None, 0
        return value

    def loss_state(self) -> tuple[float, int, str]:
        """The loss summed since the last `take_mean_loss` as plain numbers (for a checkpoint):
        (sum, count, dtype). A float32 sum read as a Python float and back is exact."""
        if not self._loss_n:
            return 0.0, 0, "float32"
        return float(self._loss_sum), self._loss_n, str(self._loss_sum.dtype).removeprefix("torch.")

    def restore_loss(self, total: float, count: int, dtype: str) -> None:
        if count:
            self._loss_sum, self._loss_n = torch.tensor(total, dtype=getattr(torch, dtype)), count

    def step(self, state, lr: float) -> None:
        if not self.enabled:
            return
        show_bar = self.bar is not None and (state.step % 10 == 0 or state.step == self.total)
        show_line = self.bar is None and (state.step % self.log_every == 0 or state.step == self.total)
        if not (show_bar or show_line):
            if self.bar is not None:
                self.bar.update(state.step - self.bar.n)
            return
        loss = float(self._window_sum) / self._window_n if self._window_n else float("nan")
        self._window_sum, self._window_n = None, 0
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = (state.samples_seen - self._samples0) / elapsed
        if self.bar is not None:
            self.bar.update(state.step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.0f}", refresh=False)
        else:
            steps_left = self.total - state.step
            eta = elapsed / max(state.step - self._step0, 1) * steps_left
            print(f"step {state.step}/{self.total} loss={loss:.4f} lr={lr:.2e} "
                  f"samples/s={rate:.1f} eta={eta:.0f}s", file=sys.stderr, flush=True)
        self._t0, self._samples0, self._step0 = time.perf_counter(), state.samples_seen, state.step

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""Test hook: SIGKILL this process at a named point, to prove a killed run resumes exactly.

`PARETUNE_FAULT_AT=<point>[:<n>]` kills the process at `<point>`: for `step` and `checkpoint`
when it is at optimizer step n, for the others the n-th time it gets there (default: the first).
Unset, every call is one environment lookup. Points:

    step            after optimizer step n (and its evaluation and checkpoint, if any)
    checkpoint      while step n's checkpoint is written: files on disk, not yet renamed into place
    final-model     after the final model/ is written, before metrics.json marks the run finished
    finished        after metrics.json, before the run folder is slimmed
    swap            between the two renames that put an overwriting run in place

`PARETUNE_FAULT_AT_STEP=N` (older tests) is `PARETUNE_FAULT_AT=step:N`. Read here only, so a
test's fault never leaks into anything but the process it was set for.
"""
from __future__ import annotations

import os
import signal

FAULT_ENV = "PARETUNE_FAULT_AT"
POINTS = ("step", "checkpoint", "final-model", "finished", "swap")
_reached: dict[str, int] = {}


def _wanted() -> tuple[str, int] | None:
    step = os.environ.get("PARETUNE_FAULT_AT_STEP")
    if step:
        return "step", int(step)
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    point, _, count = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"{FAULT_ENV}={spec}: unknown point {point!r}; one of {', '.join(POINTS)}")
    return point, int(count or 1)


def fault_point(point: str, step: int | None = None) -> None:
    """Kill this process if PARETUNE_FAULT_AT names this point (at this step) and this is the time."""
    wanted = _wanted()
    if wanted is None or wanted[0] != point:
        return
    if step is None:
        _reached[point] = _reached.get(point, 0) + 1
        step = _reached[point]
    if step == wanted[1]:
        os.kill(os.getpid(), signal.SIGKILL)

"""`training.compile`: torch.compile (inductor) the model the loop trains.

The model is compiled in place (`nn.Module.compile`): the module, its parameters and their names
stay as they were, so checkpoints, the saved model and adapters hold the plain names (no
`_orig_mod.` prefix) and a compiled run's files load like any other.

Shapes: batches are length-bucketed (data/batching.py) but not padded to fixed sizes, so every
batch may have its own (rows, width). Compiling per shape would recompile nearly every step;
instead dynamo's automatic dynamic shapes compile a graph for the first shape and, when a second
one comes, once more with the sizes symbolic, which then serves every later batch (five batch
widths: two compilations, tests/test_compile.py). Evaluation (no grad, eval mode) has graphs of its
own, and each graph break adds one: HF Llama's generative forward, whose boolean `logits_to_keep`
gives data-dependent shapes, compiled 9 graphs with 12 breaks for 3 training steps of different
widths and an evaluation. The count is logged and written to cost.json (`compile`).
Once training ends the module is plain again (`release`): the final evaluation and decoding, whose
KV cache grows every token, would only recompile.

`auto`: on a CUDA device for runs of at least AUTO_MIN_STEPS optimizer steps, on one unsharded
model; off on CPUs. The rule is the conservative one until bench/gpu.py measures where compiling
pays: compile time is tens of seconds on a GPU for a small model, against a steady-state gain
that only a few hundred steps earn back; on the 2-core CPU here, compiling a tiny Llama's training
with inductor took 415 s, far longer than any run it could speed up. Under `auto` a graph dynamo
cannot compile runs eagerly instead of failing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from paretune.errors import ConfigError

log = logging.getLogger("paretune")

AUTO_MIN_STEPS = 300
# What `auto` rests on, written into the log and cost.json with its decision.
AUTO_BASIS = {
    "cuda": "stated, not yet measured: tens of seconds of compiling a small model, earned back in a few "
            "hundred steps (bench/gpu.py sft-compile measures it on a lent GPU)",
    "cpu": "measured: inductor took 415 s to compile a tiny Llama's training on 2 cores, longer than the runs "
           "it could speed up (bench/compile_cpu.py measures start-up, speed-up and break-even on MiniLM)",
}
BACKEND = "inductor"  # tests swap in a cheaper backend where they check the wiring, not the kernels


@dataclass
class CompiledRun:
    """How many graphs dynamo compiled while the run trained and evaluated."""

    model: torch.nn.Module
    reason: str
    graphs_before: int = 0
    breaks_before: int = 0
    started: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict:
        graphs, breaks = _counters()
        return {"backend": BACKEND, "why": self.reason, "graphs_compiled": graphs - self.graphs_before,
                "graph_breaks": breaks - self.breaks_before}

    def release(self) -> None:
        """Back to the plain module once training is over: decoding after it (a KV cache that grows
        every token) would recompile past dynamo's limit, for no gain in a one-off pass."""
        self.model._compiled_call_impl = None  # what nn.Module.compile set; torch has no public undo

    def describe(self) -> str:
        s = self.summary()
        return (f"torch.compile ({s['backend']}, {s['why']}): {s['graphs_compiled']} graphs compiled, "
                f"{s['graph_breaks']} graph breaks")


def compile_for_training(model: torch.nn.Module, mode: bool | str, device_type: str, total_steps: int,
                         sharding: str) -> CompiledRun | None:
    """Compile `model` in place when `mode` (and, under auto, the rule above) says so."""
    reason = _reason(mode, device_type, total_steps, sharding)
    if reason is None:
        if mode == "auto":
            log.info("training.compile auto: off (%s, %d steps, sharding %s; %s)", device_type, total_steps, sharding,
                     AUTO_BASIS["cuda" if device_type == "cuda" else "cpu"])
        return None
    import torch._dynamo

    if mode == "auto":
        torch._dynamo.config.suppress_errors = True  # a graph that cannot compile runs eagerly
    graphs, breaks = _counters()
    model.compile(backend=BACKEND)
    log.info("training.compile: compiling the model with torch.compile (%s): %s", BACKEND, reason)
    return CompiledRun(model, reason, graphs, breaks)


def _reason(mode: bool | str, device_type: str, total_steps: int, sharding: str) -> str | None:
    if mode is False:
        return None
    if sharding != "none":
        if mode is True:
            raise ConfigError(f"training.compile: true is not supported with {sharding} sharding; set it to false")
        return None
    if mode is True:
        return "training.compile: true"
    if device_type == "cuda" and total_steps >= AUTO_MIN_STEPS:
        return f"auto: CUDA and {total_steps} >= {AUTO_MIN_STEPS} steps ({AUTO_BASIS['cuda']})"
    return None


def _counters() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))

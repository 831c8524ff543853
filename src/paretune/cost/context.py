"""The largest context a run can train on a device: `paretune plan`'s `max_context`.

Peak training memory at sequence length L, for `rows` sequences of L tokens per batch:

    fixed + max(2 x gradients, overhead x (rows x (a x L + b x L^2) + head(rows x labelled share x L)))

* fixed: the state that does not grow with L: on a CPU the process's resident memory before
  training (runtime, the loaded model) plus the optimizer moments of the trainable weights; on a
  GPU the weights and moments (cost/plan.py `memory_parts`).
* gradients and activations peak at different moments: activations are all held when backward
  starts and freed layer by layer as the weights' gradients fill in; the optimizer step then
  holds the gradients and a temporary as large (AdamW's foreach update). Full fine-tuning of
  SmolLM2-135M on a CPU peaked at the same 3.1 GiB at 256 tokens, set by that step, and grew with
  length only past it (bench/plan_context.py); under LoRA the gradients are negligible.
* a, b: bytes autograd keeps for backward per token (and per token x L: attention scores where the
  attention materialises them), counted, not modelled: one forward of the run's own model (method,
  adapters, dropout included) at two short lengths with `saved_tensors_hooks`, every distinct
  saved storage that is not a weight summed. Counting covers whatever the architecture and method
  keep, which a per-architecture formula does not (LoRA's dropout keeps a copy of each adapted
  layer's input; a frozen layer keeps none for its weight).
* gradient checkpointing (`training.gradient_checkpointing`): the count is taken with it off; with
  it on each trained layer keeps only its input (hidden size values per token) and one layer's
  activations are alive again while it is recomputed in backward.
* head: a causal LM's logits over the vocabulary for every labelled token, three of them at the
  peak of the backward pass (log-softmax output, its gradient, the logits' gradient), in fp32;
  with `training.chunked_loss` one chunk's worth whatever the length (`auto` chunks above
  engine/chunked_loss.py's AUTO_LOGITS).
* overhead: what a step holds beyond the saved tensors (gradients of activations in backward,
  temporaries, the allocator's slack) is not counted: the counted growth is multiplied by
  STEP_OVERHEAD, measured by bench/plan_context.py as peak resident growth over counted growth
  (SmolLM2-135M LoRA, `paretune train` at 256 and 512 tokens on a CPU: 1.4-1.5). Reading it from
  the plan's own probe step instead gave 1.84: that step peaks higher than a run's steps do.
  Checked on full fine-tuning, which did not set it (2026-12-07, loaded 2-core CPU): the largest
  length under the peak measured at 768 and 1024 tokens came out +0.3% and -7.4%; at 512, next to
  where the optimizer step stops setting the peak, +20%.

The count runs in the plan's process on this machine (cost/calibrate.py); GPU rows take the same
counts at half the bytes (bf16 autocast). bench/plan_context.py compares the figure with the
largest length measured to fit.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch

from paretune.engine.chunked_loss import AUTO_LOGITS, CHUNK_LOGITS

MIB = 2**20
COUNT_LENGTHS = (64, 128)  # short enough to cost well under a second on a CPU, long enough to fit a, b
HEAD_COPIES = 3  # vocabulary-wide fp32 tensors per labelled token at the backward pass's peak
NO_POSITION_LIMIT = 2**20  # models without a position table (none known) are searched up to this
STEP_OVERHEAD = 1.5  # a step's peak growth over the counted saved tensors (bench/plan_context.py)


@dataclass
class ContextModel:
    """What grows with the sequence length in a training step (counted on the run's model, fp32)."""

    bytes_per_token: float  # a: activations kept per token of every row (all trained layers)
    bytes_per_token_sq: float  # b: the part that grows with length x length (attention scores)
    layers: int
    hidden: int
    checkpointing: bool
    vocab: int  # 0: the loss is not over an LM head of this size
    labelled_share: float  # labelled tokens per token (the LM head's logits are kept only for those)
    chunked_loss: bool | str  # training.chunked_loss where it applies, else False
    rows: int  # sequences of the planned length per batch
    max_positions: int | None  # the model's position table: no length past it
    overhead: float = 1.0  # peak growth over counted growth (STEP_OVERHEAD in the plan)

    def activation_bytes(self, length: int, scale: float = 1.0) -> float:
        """Bytes that grow with the length, for one batch of `rows` sequences of `length` tokens."""
        per_row = self.bytes_per_token * length + self.bytes_per_token_sq * length**2
        if self.checkpointing and self.layers:
            # inputs of every layer (fp32 values of the hidden size) + one layer recomputed
            per_row = 4 * self.hidden * self.layers * length + per_row / self.layers
        return self.overhead * (self.rows * (per_row * scale) + self._head_bytes(length))

    def _head_bytes(self, length: int) -> float:
        if not self.vocab:
            return 0.0
        labelled = self.rows * length * self.labelled_share
        plain = labelled * self.vocab
        if self.chunked_loss is True or (self.chunked_loss == "auto" and plain > AUTO_LOGITS):
            return HEAD_COPIES * 4 * min(plain, CHUNK_LOGITS) + 4 * self.hidden * labelled
        return HEAD_COPIES * 4 * plain

    def peak_mib(self, length: int, fixed_mib: float, scale: float = 1.0, gradients_mib: float = 0.0) -> float:
        return fixed_mib + max(2 * gradients_mib, self.activation_bytes(length, scale) / MIB)

    def largest(self, capacity_mib: float, fixed_mib: float, scale: float = 1.0, gradients_mib: float = 0.0) -> dict:
        """The longest sequence whose step fits in `capacity_mib` (a search: peak grows with length),
        with what decided it and the model it came from (a later reader can solve other caps)."""
        top = self.max_positions or NO_POSITION_LIMIT
        fits = lambda n: self.peak_mib(n, fixed_mib, scale, gradients_mib) <= capacity_mib  # noqa: E731
        found = {"rows": self.rows, "memory_mib": round(capacity_mib), "fixed_mib": round(fixed_mib, 1),
                 "gradients_mib": round(gradients_mib, 1), "activation_scale": scale, "model": self.as_dict()}
        if not fits(1):
            return {"tokens": 0, "limit": "memory", **found}
        if fits(top):
            return {"tokens": top, "limit": "model positions", **found}
        low, high = 1, top  # fits(low), not fits(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return {"tokens": low, "limit": "memory", **found}

    def as_dict(self) -> dict:
        return asdict(self)


def host_memory_mib(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """This machine's memory for one run: the RAM, or the container's cgroup limit when lower."""
    limits = [psutil.virtual_memory().total]
    for path in (cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits) / MIB


def saved_bytes(model: torch.nn.Module, length: int, device: torch.device, forward=None) -> int:
    """Bytes of the distinct non-weight tensors autograd saves in one training-mode forward of one
    row of `length` tokens (`forward(input_ids)` when given, else `model(input_ids=...)`)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 1000)
    input_ids = (torch.arange(length, device=device) % max(vocab - 10, 1) + 5)[None]
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = forward(input_ids) if forward is not None else model(input_ids=input_ids)
    del output
    return sum(seen.values())


def count_context(model: torch.nn.Module, device: torch.device, *, checkpointing: bool, vocab: int,
                  labelled_share: float, chunked_loss: bool | str, rows: int, forward=None) -> ContextModel:
    """Count a and b on `model` (training mode, checkpointing off while counting) at two lengths."""
    config = getattr(model, "config", None)
    max_positions = getattr(config, "max_position_embeddings", None)
    long = min(COUNT_LENGTHS[1], max_positions or COUNT_LENGTHS[1])  # a tiny test model has 64 positions
    short = min(COUNT_LENGTHS[0], long // 2)
    was_training = model.training
    model.train()
    with ExitStack() as undo:
        for module in model.modules():  # transformers' checkpointing flag: counted with it off
            if getattr(module, "gradient_checkpointing", False) is True:
                module.gradient_checkpointing = False
                undo.callback(setattr, module, "gradient_checkpointing", True)
        at_short = saved_bytes(model, short, device, forward)
        at_long = saved_bytes(model, long, device, forward)
    model.train(was_training)
    # at(L) = a L + b L^2 through both points; b never negative (allocator rounding at short lengths)
    quadratic = max(0.0, (at_long / long - at_short / short) / (long - short))
    linear = at_long / long - quadratic * long
    return ContextModel(
        bytes_per_token=linear, bytes_per_token_sq=quadratic,
        layers=int(getattr(config, "num_hidden_layers", 0) or 0), hidden=int(getattr(config, "hidden_size", 0) or 0),
        checkpointing=checkpointing, vocab=vocab, labelled_share=labelled_share, chunked_loss=chunked_loss,
        rows=rows, max_positions=max_positions, overhead=STEP_OVERHEAD,
    )

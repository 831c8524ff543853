"""Cross-entropy through the LM head a chunk of tokens at a time (`training.chunked_loss`).

A causal LM's logits are tokens x vocabulary: 8k tokens of a 49k-word vocabulary are 400M
values, 1.6 GB in fp32, held for the backward pass, with their gradient beside them. Here the
model's forward stops before its head (the head is made the identity for that call, so every
model, adapter and prompt-learning method runs its own forward unchanged), and the loss takes the
hidden states of the target positions in chunks: each chunk's logits are made, scored and freed,
and made again in the backward pass (torch.utils.checkpoint). Peak memory for the head is one
chunk's logits; the cost is the head's matmul run twice. Liger's fused linear cross-entropy does
the same in one Triton kernel on GPUs; this is the portable form.

A task opts in with `token_cross_entropy = True`: its `loss(logits, labels)` is the mean
cross-entropy over rows of flat logits, ignoring IGNORE_INDEX (tasks/generation.py). Models whose
forward changes the logits after the head (Gemma 2's soft-capping, Cohere's and Granite's scaling)
are left to the plain path, as are sharded models (the head's weight is split across processes).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from paretune.errors import ConfigError

AUTO_LOGITS = 64 * 2**20  # auto: chunk when a batch's logits would hold more values (256 MB in fp32)
CHUNK_LOGITS = 16 * 2**20  # values in one chunk's logits: 64 MB in fp32, big enough for a full GPU matmul
IGNORE_INDEX = -100
# Config attributes of models that change the logits after the head: the plain path keeps them right.
LOGIT_CHANGES = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class ChunkedLoss:
    """The head of `model` (unwrapped), applied in chunks inside the loss."""

    def __init__(self, model: torch.nn.Module, mode: bool | str):
        self.mode = mode
        self.head = model.get_output_embeddings()
        self.vocab = self.head.weight.shape[0]
        self.chunk_tokens = max(64, CHUNK_LOGITS // self.vocab)

    def wanted(self, labels: torch.Tensor) -> bool:
        """Whether this batch goes through the chunks: always when asked for, by size under auto."""
        return self.mode is True or labels.numel() * self.vocab > AUTO_LOGITS

    @contextmanager
    def hidden_states(self):
        """While inside, the model's forward returns the hidden states its head would have read."""
        head = self.head
        own = head.__dict__.get("forward")  # a hook library may have set one on the instance
        head.forward = _identity
        try:
            yield
        finally:
            if own is None:
                del head.forward
            else:
                head.forward = own

    def __call__(self, hidden: torch.Tensor, labels: torch.Tensor, autocast: Callable = None) -> torch.Tensor:
        """The mean cross-entropy over labelled rows, as `F.cross_entropy(head(hidden), labels)`."""
        hidden = hidden.reshape(-1, hidden.shape[-1])
        labels = labels.reshape(-1)
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, len(labels), self.chunk_tokens):
            end = start + self.chunk_tokens
            total = total + checkpoint(self._chunk_sum, hidden[start:end], labels[start:end], autocast,
                                       use_reentrant=False)
        return total / (labels != IGNORE_INDEX).sum()

    def zero(self, hidden: torch.Tensor) -> torch.Tensor:
        """A zero loss that still reaches every head weight (a process's stand-in batch under DDP)."""
        return self.head(hidden.reshape(-1, hidden.shape[-1])[:1]).float().sum() * 0.0

    def _chunk_sum(self, hidden: torch.Tensor, labels: torch.Tensor, autocast) -> torch.Tensor:
        with autocast() if autocast is not None else _no_context():
            logits = self.head(hidden)
        return F.cross_entropy(logits.float(), labels, reduction="sum", ignore_index=IGNORE_INDEX)


def chunked_loss_for(model: torch.nn.Module, task, mode: bool | str, sharding: str) -> ChunkedLoss | None:
    """The chunked loss the run uses, or None for the plain path; an impossible `true` is an error."""
    if mode is False:
        return None
    why_not = _unsupported(model, task, sharding)
    if why_not is None:
        return ChunkedLoss(model, mode)
    if mode is True:
        raise ConfigError(f"training.chunked_loss: true, but {why_not}; set it to auto or false")
    return None


def _unsupported(model: torch.nn.Module, task, sharding: str) -> str | None:
    if not getattr(task, "token_cross_entropy", False):
        return f"the {getattr(task, 'name', 'run')} task's loss is not a cross-entropy over an LM head"
    if sharding != "none":
        return f"the model is sharded ({sharding}): its head's weight is split across processes"
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        return "the model has no output-embedding head to run in chunks"
    config = getattr(model, "config", None)
    changed = [name for name in LOGIT_CHANGES if getattr(config, name, None) not in (None, 1, 1.0)]
    if changed:
        return f"the model changes its logits after the head ({', '.join(changed)})"
    return None


def _identity(hidden: torch.Tensor) -> torch.Tensor:
    return hidden


@contextmanager
def _no_context():
    yield

"""What every compression method provides, and what it hands back.

A method is a pydantic options model and one function that turns the parent's model into a
`Compressed` result: the model in memory and the stored form (paretune.stored) it is saved in.
Methods transform; saving and loading each form is the stored form's business. The shared code in `run.py` and `run_writer.py` does everything else: loading the
parent, saving, evaluating, timing, and writing the new run folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import BaseModel, ConfigDict

from paretune.data.encoded import Encoded, EvalSet
from paretune.tasks.base import Task


class CompressOptions(BaseModel):
    """Base of every method's options; each method adds its own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass
class CompressContext:
    """What a method may need beyond the model: the task, data to score with, a scratch folder."""

    task: Task
    tokenizer: Any
    pad_id: int
    max_length: int
    train: Encoded
    validation: EvalSet
    workdir: Path  # scratch space that is removed afterwards (ONNX files are made here first)


@dataclass
class Compressed:
    """A method's result.

    `model` is the compressed model in memory, in the shape its stored form saves (a PyTorch
    module; for ONNX an `OrtModel` over the exported file); `form` names that form in the
    `paretune.stored` registry, `form_settings` what loading it needs; `settings` are the
    resolved settings and `checks` what the method verified (ONNX parity, sparsity reached),
    both recorded in metrics.json.
    """

    form: str
    model: torch.nn.Module
    form_settings: dict[str, Any] = field(default_factory=dict)  # what loading needs (model/paretune.json)
    settings: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    # For magnitude pruning: which weights a recovery fine-tune must keep at zero.
    keep_zero: list[tuple[torch.nn.Module, str]] = field(default_factory=list)


@dataclass(frozen=True)
class CompressionMethod:
    name: str
    options: type[CompressOptions]
    apply: Callable[[torch.nn.Module, CompressOptions, CompressContext], Compressed]
    description: str
    # Whether a short recovery fine-tune (--recover-epochs) can follow: the result is a float
    # PyTorch model that trains like any other.
    recoverable: bool = False
    # Whether the result still decodes, so a generative run can be compressed with it: ONNX
    # exports one forward pass to logits (no KV cache, no generation loop) and prune-heads
    # cuts BERT-style attention only.
    generative: bool = True

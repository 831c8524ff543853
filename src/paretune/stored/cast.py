"""fp16 and bf16: plain transformers weights cast to 16 bits (`dtype` in config.json).

Loaded in the dtype they were stored in; they run anywhere torch does, and best on a GPU, whose
tensor cores multiply 16-bit matrices (compression/cast.py says when to pick which).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paretune.stored import pruned_heads
from paretune.stored.base import StoredForm

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def save(model: torch.nn.Module, model_dir: Path, settings: dict[str, Any]) -> None:
    model.save_pretrained(model_dir)


def _load(name: str):
    def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
        if pruned_heads.has_head_counts(model_dir):  # a pruned model, cast afterwards
            return pruned_heads.load_cut(model_dir, auto_class, DTYPES[name], **kwargs)
        return auto_class.from_pretrained(model_dir, use_safetensors=True, dtype=DTYPES[name], **kwargs)

    return load


FP16 = StoredForm(name="fp16", save=save, load=_load("fp16"), description="transformers weights in float16",
                  use="plain transformers (float16 weights), best served on a GPU")
BF16 = StoredForm(name="bf16", save=save, load=_load("bf16"), description="transformers weights in bfloat16",
                  use="plain transformers (bfloat16 weights), best served on a GPU")

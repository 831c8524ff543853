"""pytorch: plain transformers safetensors, as save_pretrained writes them.

What full and freeze fine-tuning train, what LoRA, AdaLoRA and IA3 become once their update is
merged into the weights, and what magnitude pruning, drop-layers and distillation write (a
shallower or sparser model is still an ordinary transformers model). A folder that records no
form, and shows none of the other forms' files, is this one. A merged LoRA over a 16-bit base is
stored in that dtype (recorded as the form's "dtype") and loaded in fp32, as it was trained.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paretune.stored.base import StoredForm

NAME = "pytorch"


def save(model: torch.nn.Module, model_dir: Path, settings: dict[str, Any]) -> None:
    model.save_pretrained(model_dir)


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    if (recorded or {}).get("dtype"):  # stored at 16 bits like its base (a merged LoRA): computed in fp32
        kwargs.setdefault("dtype", torch.float32)
    return auto_class.from_pretrained(model_dir, use_safetensors=True, **kwargs)


FORM = StoredForm(name=NAME, save=save, load=load, compressible=True,
                  description="plain transformers weights (trained, merged, pruned, layer-dropped, distilled)")

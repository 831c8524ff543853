"""bottleneck-adapter: paretune's bottleneck adapters (methods/adapter.py) over the base in base/.

Adapters are non-linear layers, so they cannot be merged: model/ holds bottleneck_config.json
and the adapters with the trained head, and base/ the frozen base model without them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paretune.methods import adapter
from paretune.stored.base import BASE_DIR, StoredForm

NAME = "bottleneck-adapter"


def save(model: torch.nn.Module, model_dir: Path, settings: dict[str, Any]) -> None:
    adapter.save_bottlenecks(model, Path(model_dir))
    model.save_pretrained(Path(model_dir) / BASE_DIR, state_dict=adapter.base_state_dict(model))


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    base = auto_class.from_pretrained(Path(model_dir) / BASE_DIR, use_safetensors=True, **kwargs)
    return adapter.load_bottlenecks(base, Path(model_dir))


def detect(model_dir: Path) -> bool:
    return (Path(model_dir) / adapter.CONFIG_FILE).is_file()


FORM = StoredForm(
    name=NAME, save=save, load=load, detect=detect, plain_transformers=False, over_base=True,
    description="bottleneck adapters over the frozen base model in base/",
    use="bottleneck adapters over `model/base/`: load with paretune's Predictor",
)

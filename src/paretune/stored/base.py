"""What every stored form provides: how it saves a model into model/, loads it back, is told apart.

A run's model/ folder always holds the tokenizer and paretune.json (task, labels, max_length,
method, and under "form" the form's name and the settings loading needs). The weights are in
one of the forms registered in `paretune.stored`; each is one module exposing a `StoredForm`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from paretune.run_folder import TASK_FILE

WEIGHTS_FILE = "model.safetensors"  # what transformers' save_pretrained writes
BASE_DIR = "base"  # in model/: the frozen base model under an adapter that cannot be merged

# save(model, model_dir, settings): write the weights (and config.json) into model_dir.
Save = Callable[[torch.nn.Module, Path, dict[str, Any]], None]
# load(model_dir, auto_class, device, recorded form dict, **from_pretrained kwargs) -> a module
# answering model(input_ids=..., attention_mask=...).logits
Load = Callable[..., torch.nn.Module]


@dataclass(frozen=True)
class StoredForm:
    name: str
    save: Save
    load: Load
    description: str
    # How a folder that does not record this form's name is recognised (folders written by
    # training before forms were recorded, or by an older paretune). None: only by its name.
    detect: Callable[[Path], bool] | None = None
    # Device types it runs on here (None: any torch device). A callable because some depend on
    # what is installed (ONNX Runtime with or without CUDA).
    devices: Callable[[], tuple[str, ...]] | None = None
    device_hint: str = ""  # what to do when a device it cannot run on is asked for
    use: str = "plain transformers weights"  # one line for the run's README
    plain_transformers: bool = True  # model/ loads with AutoModel*.from_pretrained alone
    over_base: bool = False  # model/ is an adapter over base/: nothing to export merged
    compressible: bool = False  # fp32 PyTorch weights, the start of every compression
    counts_parameters: bool = True  # .parameters() of the loaded model shows every weight
    # Other folders whose files are part of this model (an ensemble's members), for its size.
    parts: Callable[[Path], list[Path]] | None = None


def read_info(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / TASK_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_info(model_dir: Path, info: dict[str, Any]) -> None:
    (Path(model_dir) / TASK_FILE).write_text(json.dumps(info, indent=2) + "\n")

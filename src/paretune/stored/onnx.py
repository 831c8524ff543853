"""onnx and onnx-int8: model.onnx (logits from input_ids and attention_mask), run by ONNX Runtime.

In memory the form is an `OrtModel` (ort_model.py): compression/onnx.py and onnx_int8.py export
and check the graph in a scratch folder and hand over an OrtModel on it; saving copies the graph
(and its external weights, for models over 2 GB) into model/ beside config.json. It runs on the
CPU, and on CUDA when onnxruntime-gpu is installed.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import transformers

from paretune.stored.base import StoredForm
from paretune.stored.ort_model import OrtModel, cuda_available

ONNX_FILE = "model.onnx"


def save(model: OrtModel, model_dir: Path, settings: dict[str, Any]) -> None:
    shutil.copyfile(model.path, Path(model_dir) / model.path.name)
    data = model.path.with_name(model.path.name + ".data")  # external weights, for models over 2 GB
    if data.is_file():
        shutil.copyfile(data, Path(model_dir) / data.name)
    model.config.save_pretrained(model_dir)


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> OrtModel:
    trust = kwargs.get("trust_remote_code", False)  # the caller's, as for every other form
    config = transformers.AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
    return OrtModel(Path(model_dir) / ONNX_FILE, config, device)


def _devices() -> tuple[str, ...]:
    return ("cpu", "cuda") if cuda_available() else ("cpu",)


def _form(name: str, description: str) -> StoredForm:
    return StoredForm(
        name=name, save=save, load=load, devices=_devices, plain_transformers=False, counts_parameters=False,
        device_hint="this onnxruntime has no CUDA provider: pip install onnxruntime-gpu, "
                    "or load the ONNX model with device='cpu'",
        description=description,
        use="`model/model.onnx` also runs with onnxruntime alone: inputs input_ids, attention_mask; output logits",
    )


ONNX = _form("onnx", "ONNX graph run by ONNX Runtime")
ONNX_INT8 = _form("onnx-int8", "ONNX graph with int8 MatMuls and convolutions (ONNX Runtime quantization)")

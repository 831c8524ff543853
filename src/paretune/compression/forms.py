"""How a run's model/ folder stores its model, and how each stored form loads back.

model/paretune.json names the form under "form" ({"name": ..., plus the form's settings}):

    pytorch        plain transformers safetensors (absent "form" means this): trained runs, and
                   pruned, layer-dropped and distilled models
    fp16, bf16     the same, with the weights cast (GPU serving)
    int8-dynamic   int8 Linear weights with their scales, in safetensors; the model is rebuilt
                   from config.json, dynamically quantized, and given these weights (CPU only)
    onnx,          model.onnx, run by ONNX Runtime through `OrtModel`
    onnx-int8

Removing attention heads gives layers of different widths, which a transformers config cannot
express: config.json then lists each layer's head count under HEADS_KEY, and the empty model is
cut to those shapes before its weights are loaded (prune_heads.apply_head_counts).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_file

from paretune.errors import ParetuneError
from paretune.run_folder import TASK_FILE

log = logging.getLogger("paretune")

PYTORCH = "pytorch"
CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
ONNX_FORMS = ("onnx", "onnx-int8")
CPU_ONLY = ("int8-dynamic",)  # PyTorch's dynamic int8 kernels exist for CPUs only
HEADS_KEY = "paretune_attention_heads"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"


def read_form(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / TASK_FILE
    info = json.loads(path.read_text()) if path.is_file() else {}
    return info.get("form") or {"name": PYTORCH}


def serving_device(form: dict[str, Any], requested: str | None) -> torch.device:
    """The device a stored form runs on: the one asked for, except where the form cannot."""
    default = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested or default)
    if form["name"] in CPU_ONLY and device.type != "cpu":
        if requested:
            raise ParetuneError(f"a {form['name']} model runs on the CPU only; load it with device='cpu' "
                                "(or compress with fp16/bf16 or onnx for a GPU)")
        device = torch.device("cpu")
    if form["name"] in ONNX_FORMS and device.type == "cuda":
        from paretune.compression.ort_model import cuda_available

        if not cuda_available():
            if requested:
                raise ParetuneError("this onnxruntime has no CUDA provider: pip install onnxruntime-gpu, "
                                    "or load the ONNX model with device='cpu'")
            device = torch.device("cpu")
    return device


def head_counts(config) -> list[int] | None:
    counts = getattr(config, HEADS_KEY, None)
    return list(counts) if counts else None


def empty_model(model_dir: Path, auto_class, **kwargs) -> torch.nn.Module:
    """The architecture of model/ with untrained weights, cut to its stored attention widths."""
    config = transformers.AutoConfig.from_pretrained(model_dir, **kwargs)
    model = auto_class.from_config(config, **kwargs)
    counts = head_counts(config)
    if counts:
        from paretune.compression.prune_heads import apply_head_counts

        apply_head_counts(model, counts)
    return model


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors state dict into `model`, naming what does not fit."""
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ParetuneError(f"{path} does not fit its config.json: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}; the model folder is damaged or mixed up")


def load_form(model_dir: Path, auto_class, device: torch.device | None = None, **kwargs) -> torch.nn.Module:
    """Load model/ in whichever form `read_form` names (plain transformers included)."""
    model_dir = Path(model_dir)
    form = read_form(model_dir)
    name = form["name"]
    if name in ONNX_FORMS:
        from paretune.compression.ort_model import OrtModel

        trust = kwargs.get("trust_remote_code", False)  # the caller's, as for every other form
        return OrtModel(model_dir / ONNX_FILE, transformers.AutoConfig.from_pretrained(
            model_dir, trust_remote_code=trust), device)
    if name == "int8-dynamic":
        from paretune.compression.int8_dynamic import load_int8

        return load_int8(model_dir, auto_class, form, **kwargs)
    if name != PYTORCH and name not in CAST_DTYPES:
        raise ParetuneError(f"{model_dir / TASK_FILE} names an unknown model form '{name}': "
                            "was it written by a newer paretune?")
    cast = {"dtype": CAST_DTYPES[name]} if name in CAST_DTYPES else {}
    config = transformers.AutoConfig.from_pretrained(model_dir, **kwargs)
    if not head_counts(config):
        return auto_class.from_pretrained(model_dir, use_safetensors=True, **cast, **kwargs)
    model = empty_model(model_dir, auto_class, **kwargs).to(cast.get("dtype", torch.float32))
    load_weights(model, model_dir / WEIGHTS_FILE)
    return model


def is_plain_float(model_dir: Path) -> bool:
    """Whether model/ holds fp32 PyTorch weights, the form every compression starts from."""
    return read_form(model_dir)["name"] == PYTORCH

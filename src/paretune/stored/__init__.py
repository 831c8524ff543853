"""How a run's model/ folder stores its model, and how it loads back: one registry of forms.

Each stored form is one module exposing a `StoredForm` (base.py): `save`, `load`, how a folder in
that form is recognised, and the devices it runs on. A new form is one module and one line in
FORMS below. model/paretune.json names the form under "form" ({"name": ..., plus what loading
needs}); folders written before forms were recorded are recognised by their files (`detect`).

Callers (training, export, Predictor, compression, distillation, the model card) use
`save_model`, `load_model`, `form_of` and `serving_device` and never branch on a form's name.
This package sits below them: it imports nothing from compression/, export, predictor, cli/ or
serving/.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paretune.errors import ParetuneError
from paretune.stored import bottleneck, cast, int8_dynamic, onnx, peft_adapter, plain, pruned_heads
from paretune.stored import embedding_head, ensemble
from paretune.stored.base import BASE_DIR, StoredForm, read_info, write_info
from paretune.stored.pruned_heads import head_counts

__all__ = ["BASE_DIR", "FORMS", "StoredForm", "form_of", "get_form", "load_model", "model_folders", "recorded_form",
           "save_model", "serving_device", "weights_form"]

# Order matters only for folders that record no form: the first form whose `detect` accepts the
# folder wins, and plain transformers weights are what is left.
FORMS: dict[str, StoredForm] = {f.name: f for f in (
    peft_adapter.FORM, bottleneck.FORM, pruned_heads.FORM, plain.FORM, cast.FP16, cast.BF16,
    int8_dynamic.FORM, onnx.ONNX, onnx.ONNX_INT8, ensemble.FORM, embedding_head.FORM,
)}


def get_form(name: str) -> StoredForm:
    try:
        return FORMS[name]
    except KeyError:
        raise ParetuneError(f"unknown stored model form '{name}' (known: {', '.join(FORMS)}): "
                            "was it written by a newer paretune?") from None


def recorded_form(model_dir: Path) -> dict[str, Any]:
    """model/paretune.json's "form" entry: {"name": ..., settings}; {} where none is recorded."""
    return dict(read_info(model_dir).get("form") or {})


def form_of(model_dir: Path) -> StoredForm:
    """The form model/ is stored in: the recorded one, else the one its files show."""
    name = recorded_form(model_dir).get("name")
    if name and name != plain.NAME:  # "pytorch" was also written for pruned heads before they had a form
        return get_form(name)
    return next((f for f in FORMS.values() if f.detect and f.detect(Path(model_dir))), FORMS[plain.NAME])


def weights_form(model: torch.nn.Module) -> str:
    """The form fp32 transformers weights of `model` are stored in: pruned-heads where its layers
    have their own head counts, plain otherwise."""
    return pruned_heads.NAME if head_counts(getattr(model, "config", None)) else plain.NAME


def save_model(model: torch.nn.Module, tokenizer, model_dir: Path, info: dict[str, Any], form: str,
               settings: dict[str, Any] | None = None) -> None:
    """Write model/ in `form`: the weights, the tokenizer, and paretune.json recording the form."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(settings or {})
    get_form(form).save(model, model_dir, settings)
    tokenizer.save_pretrained(model_dir)
    write_info(model_dir, {**info, "form": {"name": form, **settings}})


def load_model(model_dir: Path, auto_class, device: torch.device | None = None, **kwargs) -> torch.nn.Module:
    """Load model/ in whichever form it is stored. `device` matters only to forms that build a
    runtime session for one device (ONNX); kwargs go to transformers (trust_remote_code)."""
    form = form_of(model_dir)
    return form.load(Path(model_dir), auto_class, device, recorded_form(model_dir), **kwargs)


ensemble.load_member = load_model  # an ensemble's members are loaded in their own forms


def model_folders(model_dir: Path) -> list[Path]:
    """The folders whose files make up model/: itself, plus an ensemble's members (recursively)."""
    form = form_of(model_dir)
    parts = form.parts(Path(model_dir)) if form.parts else []
    return [Path(model_dir)] + [f for part in parts for f in model_folders(part)]


def serving_device(form: StoredForm, requested: str | None) -> torch.device:
    """The device a stored form runs on: the one asked for, except where the form cannot."""
    default = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested or default)
    usable = form.devices() if form.devices else None
    if usable is not None and device.type not in usable:
        if requested:
            raise ParetuneError(form.device_hint or f"a {form.name} model runs on {', '.join(usable)} only")
        device = torch.device("cpu")
    return device

"""peft-adapter: a peft adapter (prompt, prefix, p-tuning) in model/, over the frozen base in base/.

Virtual tokens cannot be folded into the weights, so model/ holds what peft's save_pretrained
writes (adapter_config.json, the adapter and the trained head) and base/ the base model with the
trained head put back in place. LoRA, AdaLoRA and IA3 are merged instead (trained.py) and stored
as plain weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paretune.errors import ParetuneError
from paretune.stored.base import BASE_DIR, StoredForm

NAME = "peft-adapter"
PEFT_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes
WEIGHTS = "adapter_model.safetensors"


def save(model: torch.nn.Module, model_dir: Path, settings: dict[str, Any]) -> None:
    model.save_pretrained(model_dir)  # adapter weights plus the trained head (modules_to_save)
    unwrap_heads(model.get_base_model()).save_pretrained(Path(model_dir) / BASE_DIR)


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    import peft

    from paretune.methods.peft_compat import accept_past_key_values
    from paretune.methods.prompt import align_token_logits

    require_safetensors(model_dir)
    base = auto_class.from_pretrained(Path(model_dir) / BASE_DIR, use_safetensors=True, **kwargs)
    model = accept_past_key_values(peft.PeftModel.from_pretrained(base, model_dir))
    align_token_logits(model)
    return model


def require_safetensors(folder: Path) -> None:
    """peft falls back to adapter_model.bin, a pickle that can run code when loaded: refuse it."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        found = ", ".join(sorted(p.name for p in folder.glob("adapter_model.*"))) or "none"
        raise ParetuneError(f"{folder} has no {WEIGHTS} (adapter weight files found: {found}): paretune "
                            "loads weights only from safetensors, never from pickled .bin/.pt files")


def is_peft_folder(folder: Path) -> bool:
    return (Path(folder) / PEFT_CONFIG).is_file()


def unwrap_heads(model: torch.nn.Module) -> torch.nn.Module:
    """Put the trained head back where peft's ModulesToSaveWrapper stands, so the model saves plain."""
    from peft.utils import ModulesToSaveWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            trained = module.unload_and_optionally_merge_module(merge=False, safe_merge=False, adapter_names=None)
            setattr(model.get_submodule(parent), child, trained)
    return model


FORM = StoredForm(
    name=NAME, save=save, load=load, detect=is_peft_folder, plain_transformers=False, over_base=True,
    description="peft adapter (virtual tokens) over the frozen base model in base/",
    use="a peft adapter over `model/base/`: load with paretune's Predictor, or peft over the base",
)

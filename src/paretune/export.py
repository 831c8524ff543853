"""Save a trained model in the forms people use it in, load it back, and export it from a run.

A finished run holds:

    model/     always loadable by the Predictor. A plain transformers model whenever the method
               allows: full and freeze train the weights themselves; LoRA, AdaLoRA and IA3 fold
               their update into the weights (merged). Prompt, prefix and p-tuning (virtual
               tokens) and bottleneck adapters (non-linear layers) cannot be folded in, so for
               them model/ holds the adapter files beside base/, the frozen base model.
    adapter/   for adapter methods only: the adapter and the trained head alone (kilobytes to a
               few MB), to load over the original base model with peft (or, for bottleneck
               adapters, paretune.methods.adapter.load_bottlenecks).

Both hold the tokenizer and paretune.json (task, labels, max_length, method).
`paretune export RUN [--merge]` copies one of them out.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from paretune.errors import ParetuneError
from paretune.methods import adapter
from paretune.run_folder import TASK_FILE, RunFolder

ADAPTER_DIR = "adapter"  # in the run folder
BASE_DIR = "base"  # in model/, for adapters that cannot be merged
PEFT_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes
NOT_MERGEABLE = (
    "its adapter cannot be folded into the base weights (prompt, prefix and p-tuning add virtual "
    "tokens; bottleneck adapters add non-linear layers)"
)


def save_trained_model(model: torch.nn.Module, tokenizer, model_dir: Path, adapter_dir: Path,
                       task_info: dict) -> None:
    """Write model/ and, for adapter methods, adapter/ (see the module docstring).

    Merging and unwrapping change `model` in place: save it last, do not train it further.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    if _is_peft(model):
        if model.active_peft_config.peft_type == "ADALORA":
            from paretune.methods.adalora import settle_rank_pattern

            settle_rank_pattern(model)
        model.save_pretrained(adapter_dir)  # adapter weights plus the trained head (modules_to_save)
        if model.active_peft_config.is_prompt_learning:
            model.save_pretrained(model_dir)
            _unwrap_heads(model.get_base_model()).save_pretrained(model_dir / BASE_DIR)
        else:
            _merge(model, adapter_dir).save_pretrained(model_dir)
    elif adapter.bottlenecks(model):
        adapter.save_bottlenecks(model, adapter_dir)
        adapter.save_bottlenecks(model, model_dir)
        model.save_pretrained(model_dir / BASE_DIR, state_dict=adapter.base_state_dict(model))
    else:
        model.save_pretrained(model_dir)
    for folder in (model_dir, adapter_dir):
        if folder.is_dir():
            tokenizer.save_pretrained(folder)
            (folder / TASK_FILE).write_text(json.dumps(task_info, indent=2) + "\n")


def load_trained_model(model_dir: Path, auto_class, device: torch.device | None = None, **kwargs) -> torch.nn.Module:
    """Load a run's model/ folder in whichever form save_trained_model (or compression) wrote it.

    `device` matters only to ONNX models, whose runtime session is made for one device.
    """
    from paretune.compression.forms import load_form

    model_dir = Path(model_dir)
    if (model_dir / PEFT_CONFIG).is_file():
        import peft

        from paretune.methods.peft_compat import accept_past_key_values
        from paretune.methods.prompt import align_token_logits

        base = auto_class.from_pretrained(model_dir / BASE_DIR, use_safetensors=True, **kwargs)
        model = accept_past_key_values(peft.PeftModel.from_pretrained(base, model_dir))
        align_token_logits(model)
        return model
    if (model_dir / adapter.CONFIG_FILE).is_file():
        base = auto_class.from_pretrained(model_dir / BASE_DIR, use_safetensors=True, **kwargs)
        return adapter.load_bottlenecks(base, model_dir)
    return load_form(model_dir, auto_class, device, **kwargs)  # plain, cast, int8, ONNX (compression/forms.py)


def export_run(run_dir: str | Path, merge: bool, output: str | Path | None = None) -> Path:
    """Copy a finished run's adapter (default) or merged full model (`merge`) to `output`."""
    run = RunFolder.open(run_dir)
    if not (run.model_dir / TASK_FILE).is_file():
        raise ParetuneError(f"{run_dir} has no trained model yet: did the run finish?")
    method = json.loads((run.model_dir / TASK_FILE).read_text()).get("method", "?")
    adapter_dir = run.path / ADAPTER_DIR
    if merge:
        if (run.model_dir / BASE_DIR).is_dir():
            raise ParetuneError(
                f"cannot export {run_dir} merged: method {method} trains an adapter, but {NOT_MERGEABLE}. "
                f"Export the adapter (without --merge), or use the run folder itself with paretune "
                "predict / serve."
            )
        source = run.model_dir
    else:
        if not adapter_dir.is_dir():
            raise ParetuneError(
                f"{run_dir} has no separate adapter: method {method} trains the model's own "
                "weights. Use --merge to export the full model."
            )
        source = adapter_dir
    target = Path(output) if output else run.path / "export" / ("merged" if merge else "adapter")
    if target.exists() and any(target.iterdir()):
        raise ParetuneError(f"{target} already exists and is not empty: choose another --output")
    shutil.copytree(source, target, dirs_exist_ok=True)
    if not merge:  # peft's README template names the base by this machine's path: a real card instead
        from paretune.model_card import write_adapter_card

        write_adapter_card(target, run, f"path/to/{target.name}")
    return target


def _is_peft(model: torch.nn.Module) -> bool:
    try:
        import peft
    except ImportError:
        return False
    return isinstance(model, peft.PeftModel)


def _merge(model, adapter_dir: Path) -> torch.nn.Module:
    """The plain transformers model with the (LoRA, AdaLoRA, IA3) update folded into its weights."""
    from paretune.methods.qlora import is_quantized

    if not is_quantized(model):
        return model.merge_and_unload()
    # 4-bit weights do not make a plain checkpoint: merge onto the original full-precision ones.
    import peft

    base = model.get_base_model()
    source = model.active_peft_config.base_model_name_or_path
    fresh = type(base).from_pretrained(source, config=base.config, use_safetensors=True)
    return peft.PeftModel.from_pretrained(fresh, adapter_dir).merge_and_unload()


def _unwrap_heads(model: torch.nn.Module) -> torch.nn.Module:
    """Put the trained head back where peft's ModulesToSaveWrapper stands, so the model saves plain."""
    from peft.utils import ModulesToSaveWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            trained = module.unload_and_optionally_merge_module(merge=False, safe_merge=False, adapter_names=None)
            setattr(model.get_submodule(parent), child, trained)
    return model

"""The stored form a trained model gets, and the separate adapter/ folder of adapter methods.

    model/     always loadable by the Predictor. Plain transformers weights whenever the method
               allows: full and freeze train the weights themselves; LoRA, AdaLoRA and IA3 fold
               their update into the weights (merged), stored in fp32 even over a 16-bit base:
               rounding the merged weights to a bf16 base's precision rounds part of a LoRA
               update away (a 6-step SmolLM2 LoRA: 39 of 100 greedy answers of the bf16 copy
               equal the trained model's, 100 of 100 of the fp32 copy; bench/serve_chat.py
               --adapter-parity), and model/ must be the model the run scored. Prompt, prefix and p-tuning (virtual
               tokens) and bottleneck adapters (non-linear layers) cannot be folded in, so for
               them model/ holds the adapter files beside base/, the frozen base model.
    adapter/   (in the run folder) for adapter methods only: the adapter and the trained head
               alone (kilobytes to a few MB), to load over the original base model with peft
               (or, for bottleneck adapters, paretune.methods.adapter.load_bottlenecks).

Both hold the tokenizer and paretune.json (task, labels, max_length, method; model/ also the form).
"""
from __future__ import annotations

from pathlib import Path

import torch

from paretune.methods import adapter
from paretune.stored import bottleneck, peft_adapter, save_model, weights_form
from paretune.stored.base import write_info

ADAPTER_DIR = "adapter"  # in the run folder


def save_trained_model(model: torch.nn.Module, tokenizer, model_dir: Path, adapter_dir: Path,
                       task_info: dict) -> None:
    """Write model/ and, for adapter methods, adapter/ (see the module docstring).

    Merging and unwrapping change `model` in place: save it last, do not train it further.
    """
    if is_peft(model):
        if model.active_peft_config.peft_type == "ADALORA":
            from paretune.methods.adalora import settle_rank_pattern

            settle_rank_pattern(model)
        model.save_pretrained(adapter_dir)  # adapter weights plus the trained head (modules_to_save)
        if model.active_peft_config.is_prompt_learning:
            save_model(model, tokenizer, model_dir, task_info, peft_adapter.NAME)
        else:
            merged = merge(model, adapter_dir)
            save_model(merged, tokenizer, model_dir, task_info, weights_form(merged))
    elif adapter.bottlenecks(model):
        adapter.save_bottlenecks(model, adapter_dir)
        save_model(model, tokenizer, model_dir, task_info, bottleneck.NAME)
    else:
        save_model(model, tokenizer, model_dir, task_info, weights_form(model))
    if adapter_dir.is_dir():
        tokenizer.save_pretrained(adapter_dir)
        write_info(adapter_dir, task_info)


def is_peft(model: torch.nn.Module) -> bool:
    try:
        import peft
    except ImportError:
        return False
    return isinstance(model, peft.PeftModel)


def merge(model, adapter_dir: Path) -> torch.nn.Module:
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

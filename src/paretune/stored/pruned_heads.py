"""pruned-heads: fp32 transformers weights whose layers keep different numbers of attention heads.

Removing heads (compression/prune_heads.py) gives layers of different widths, which a transformers
config cannot express, and transformers 5 no longer re-prunes heads on load. So config.json lists
each layer's head count under HEADS_KEY, and loading cuts the empty model to those shapes before
its weights go in: such a model/ loads through paretune, not plain transformers. The other
PyTorch forms (fp16/bf16, int8-dynamic) build their empty model here too, so a pruned model can
be cast or quantized. Supported: BERT-style attention (BERT, RoBERTa, ELECTRA, XLM-R, MiniLM).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_file

from paretune.errors import ParetuneError
from paretune.methods.layers import transformer_blocks
from paretune.stored.base import WEIGHTS_FILE, StoredForm

NAME = "pruned-heads"
HEADS_KEY = "paretune_attention_heads"
HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_heads")


def head_counts(config) -> list[int] | None:
    counts = getattr(config, HEADS_KEY, None)
    return list(counts) if counts else None


def attention_parts(block: torch.nn.Module) -> tuple[torch.nn.Module, list[torch.nn.Linear], torch.nn.Linear]:
    """(module holding the head count, [query, key, value], output projection) of one block."""
    try:
        attention = block.attention.self
        return attention, [attention.query, attention.key, attention.value], block.attention.output.dense
    except AttributeError:
        raise ParetuneError(f"prune-heads supports BERT-style attention (query/key/value and output.dense), "
                            f"not {type(block).__name__}; use drop-layers or distillation instead") from None


def head_count(attention: torch.nn.Module) -> int:
    return next(getattr(attention, a) for a in HEAD_COUNT_ATTRS if hasattr(attention, a))


def keep_heads(block: torch.nn.Module, kept: list[int]) -> None:
    """Cut one block's attention down to heads `kept` (indices in its current numbering)."""
    attention, qkv, output = attention_parts(block)
    size = qkv[0].out_features // head_count(attention)
    index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in kept]).to(qkv[0].weight.device)
    for linear in qkv:
        _cut(linear, index, dim=0)
    _cut(output, index, dim=1)
    for attr in HEAD_COUNT_ATTRS:
        if hasattr(attention, attr):
            setattr(attention, attr, len(kept))
    if hasattr(attention, "all_head_size"):
        attention.all_head_size = len(kept) * size


@torch.no_grad()
def _cut(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.index_select(dim, index).clone())
    if dim == 0:
        if linear.bias is not None:
            linear.bias = torch.nn.Parameter(linear.bias[index].clone())
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def apply_head_counts(model: torch.nn.Module, counts: list[int]) -> None:
    """Give an empty model the stored per-layer head counts (weights are loaded afterwards)."""
    for block, count in zip(transformer_blocks(model), counts):
        if head_count(attention_parts(block)[0]) != count:
            keep_heads(block, list(range(count)))


def empty_model(model_dir: Path, auto_class, **kwargs) -> torch.nn.Module:
    """The architecture of model/ with untrained weights, cut to its stored attention widths."""
    config = transformers.AutoConfig.from_pretrained(model_dir, **kwargs)
    model = auto_class.from_config(config, **kwargs)
    counts = head_counts(config)
    if counts:
        apply_head_counts(model, counts)
    return model


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors state dict into `model`, naming what does not fit."""
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ParetuneError(f"{path} does not fit its config.json: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}; the model folder is damaged or mixed up")


def load_cut(model_dir: Path, auto_class, dtype: torch.dtype = torch.float32, **kwargs) -> torch.nn.Module:
    model = empty_model(model_dir, auto_class, **kwargs).to(dtype)
    load_weights(model, Path(model_dir) / WEIGHTS_FILE)
    return model


def has_head_counts(model_dir: Path) -> bool:
    path = Path(model_dir) / "config.json"
    return path.is_file() and bool(json.loads(path.read_text()).get(HEADS_KEY))


def save(model: torch.nn.Module, model_dir: Path, settings: dict[str, Any]) -> None:
    model.save_pretrained(model_dir)  # config.json carries HEADS_KEY


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    return load_cut(model_dir, auto_class, **kwargs)


FORM = StoredForm(
    name=NAME, save=save, load=load, detect=has_head_counts, compressible=True, plain_transformers=False,
    description="fp32 transformers weights with per-layer attention head counts in config.json",
    use="transformers weights with per-layer head counts in config.json: load with paretune's Predictor",
)

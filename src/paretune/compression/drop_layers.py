"""drop-layers: keep a subset of the transformer blocks and remove the rest.

Which blocks to keep is a spec (also used by `paretune distill --student teacher:layers=...`):

    0,2,4      these blocks (0-based)
    first:N    the bottom N blocks
    every:K    every K-th block from the bottom: 0, K, 2K, ... (as DistilBERT was initialized)

The kept blocks are renumbered and config.json gets the new `num_hidden_layers`, so the saved
model is a plain, shallower transformers model. Each removed block is about 1/L of the encoder
time; a short recovery fine-tune (--recover-epochs) or distillation wins back most of the loss.
"""
from __future__ import annotations

import torch
from pydantic import Field, field_validator

from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.errors import ParetuneError
from paretune.methods.layers import transformer_blocks
from paretune.stored import weights_form
from paretune.stored.pruned_heads import HEADS_KEY, head_counts


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """Indices of the blocks a spec keeps, checked against the model's `n_layers`."""
    spec = spec.strip()
    try:
        if spec.startswith("first:"):
            kept = list(range(int(spec[len("first:"):])))
        elif spec.startswith("every:"):
            step = int(spec[len("every:"):])
            if step < 1:
                raise ValueError
            kept = list(range(0, n_layers, step))
        else:
            kept = sorted({int(part) for part in spec.split(",") if part.strip()})
    except ValueError:
        raise ParetuneError(f"layer spec '{spec}' is not understood: use '0,2,4', 'first:N' or 'every:K'") from None
    if not kept or kept[0] < 0 or kept[-1] >= n_layers:
        raise ParetuneError(f"layer spec '{spec}' keeps {kept} but the model has layers 0..{n_layers - 1}")
    return kept


def check_interchangeable(model: torch.nn.Module, blocks: torch.nn.ModuleList) -> None:
    """Blocks can be dropped only when each has the same shapes (transformer layers): the stages
    of a convolutional network change width, and its config could not describe the cut anyway."""
    shapes = [[tuple(p.shape) for p in block.parameters()] for block in blocks]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ParetuneError(f"the {len(blocks)} blocks of {type(model).__name__} differ in shape (the stages of a "
                            "convolutional network): they cannot be dropped or kept one by one; distill into a "
                            "smaller backbone, or use prune-magnitude or onnx-int8")


def keep_layers(model: torch.nn.Module, kept: list[int]) -> torch.nn.Module:
    """Cut the model down to blocks `kept` (in place) and update its config to match."""
    blocks = transformer_blocks(model)
    check_interchangeable(model, blocks)
    owner_name, attribute = next(
        (name.rpartition(".")[0], name.rpartition(".")[2]) for name, m in model.named_modules() if m is blocks
    )
    owner = model.get_submodule(owner_name) if owner_name else model
    new_blocks = torch.nn.ModuleList(blocks[i] for i in kept)
    for position, block in enumerate(new_blocks):
        for module in block.modules():  # caches index layers by position (decoders)
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = position
    setattr(owner, attribute, new_blocks)
    config = model.config
    for key in ("num_hidden_layers", "n_layer"):
        if hasattr(config, key):
            setattr(config, key, len(kept))
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds
        config.layer_types = [config.layer_types[i] for i in kept]
    counts = head_counts(config)
    if counts:
        setattr(config, HEADS_KEY, [counts[i] for i in kept])
    return model


class DropLayersOptions(CompressOptions):
    keep_layers: str = Field(..., description="Blocks to keep: '0,2,4', 'first:N' or 'every:K'.")

    @field_validator("keep_layers")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("--keep-layers is empty")
        return value


def apply(model: torch.nn.Module, options: DropLayersOptions, context: CompressContext) -> Compressed:
    n_layers = len(transformer_blocks(model))
    kept = parse_layers(options.keep_layers, n_layers)
    keep_layers(model, kept)
    return Compressed(form=weights_form(model), model=model,
                      settings={"keep_layers": options.keep_layers, "kept": kept, "layers_before": n_layers})


METHOD = CompressionMethod(
    name="drop-layers", options=DropLayersOptions, apply=apply, recoverable=True,
    description="remove transformer blocks (keep every k-th or the first N)",
)

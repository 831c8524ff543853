"""prune-magnitude: global unstructured pruning, the smallest weights set to zero for good.

All Linear weights of the model body (not embeddings, not the task head), and the convolution
weights of an image backbone's body outside its stem (the embeddings that read the pixels), are
ranked together by |w| and the smallest `sparsity` fraction is zeroed (torch.nn.utils.prune.global_unstructured,
then prune.remove, so the zeros are plain weights in the saved model). A global ranking lets
layers that tolerate it lose more than layers that do not.

The saved model is dense: zeros take as much disk and time as any weight unless a sparse
kernel or a compressor exploits them, so size and latency ratios near 1.0 are expected. What is
recorded is the sparsity reached and what it cost in quality; a recovery fine-tune
(--recover-epochs) keeps the pruned weights at zero while the others adapt.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch.nn.utils import prune

from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.errors import ParetuneError
from paretune.methods.layers import base_model
from paretune.stored import weights_form


class PruneMagnitudeOptions(CompressOptions):
    sparsity: float = Field(..., gt=0, lt=1, description="Fraction of the body's Linear (and convolution) weights set to zero.")


def prunable(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    body = base_model(model)
    stem = {id(m) for name, module in body.named_children() if "embed" in name for m in module.modules()}
    return [(m, "weight") for m in body.modules() if isinstance(m, torch.nn.Linear)
            or isinstance(m, torch.nn.Conv2d) and id(m) not in stem]


def sparsity(targets: list[tuple[torch.nn.Module, str]]) -> float:
    zeros = sum(int((getattr(m, name) == 0).sum()) for m, name in targets)
    total = sum(getattr(m, name).numel() for m, name in targets)
    return zeros / max(total, 1)


def apply(model: torch.nn.Module, options: PruneMagnitudeOptions, context: CompressContext) -> Compressed:
    targets = prunable(model)
    if not targets:
        raise ParetuneError(f"prune-magnitude found no Linear or convolution weights in the body of "
                            f"{type(model).__name__} to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=options.sparsity)
    for module, name in targets:
        prune.remove(module, name)  # masks folded into the weights: the zeros are permanent
    reached = sparsity(targets)
    pruned = sum(getattr(m, n).numel() for m, n in targets)
    return Compressed(
        form=weights_form(model), model=model, keep_zero=targets,
        settings={**options.model_dump(), "scope": "Linear and convolution weights of the model body", "weights": pruned},
        checks={"sparsity": round(reached, 6), "zero_weights": round(reached * pruned)},
    )


def hold_zeros(targets: list[tuple[torch.nn.Module, str]]) -> None:
    """Re-attach masks so training keeps the pruned weights at zero (undo with release_zeros)."""
    for module, name in targets:
        prune.custom_from_mask(module, name, mask=(getattr(module, name) != 0))


def release_zeros(targets: list[tuple[torch.nn.Module, str]]) -> None:
    for module, name in targets:
        if prune.is_pruned(module):
            prune.remove(module, name)


METHOD = CompressionMethod(
    name="prune-magnitude", options=PruneMagnitudeOptions, apply=apply, recoverable=True,
    description="global unstructured magnitude pruning to a given sparsity (made permanent)",
)

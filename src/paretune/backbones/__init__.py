"""Image backbones: the packaged EfficientNet-Lite0 (the image tasks' default) and any transformers
`AutoModelForImageClassification` checkpoint, each with the preprocessing it was trained with.

`models.load_model` asks `packaged(source)` first: a packaged name loads here, anything else
(a hub id, a local folder, a run's model/) goes through the task's transformers Auto class.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

# Name -> loader of the ImageNet body with a fresh head (kwargs: num_labels, id2label, label2id).
PACKAGED: dict[str, Callable[..., torch.nn.Module]] = {}
DEFAULT_IMAGE_BACKBONE = "efficientnet-lite0"


def _efficientnet_lite0(**kwargs: Any) -> torch.nn.Module:
    from paretune.backbones.efficientnet_lite import load_packaged

    kwargs.pop("ignore_mismatched_sizes", None)  # a from_pretrained option: the head is always new here
    return load_packaged("efficientnet-lite0", **kwargs)


PACKAGED[DEFAULT_IMAGE_BACKBONE] = _efficientnet_lite0


def register_backbones() -> None:
    """Make the packaged backbones' model types known to transformers' Auto classes, so a trained
    run's model/ (config.json model_type "paretune-efficientnet-lite") loads with from_pretrained."""
    import paretune.backbones.efficientnet_lite  # noqa: F401  (registers on import)


def packaged(source: str | None) -> Callable[..., torch.nn.Module] | None:
    """The loader of a packaged backbone named `source`, or None for a hub id or a folder."""
    return PACKAGED.get(source or "")


# Name -> (size, mean, std) the packaged weights were trained with. Lite models were trained on
# (pixel - 127) / 128: mean and std 0.5 on [0, 1] pixels.
PREPROCESSING: dict[str, tuple[int, tuple[float, ...], tuple[float, ...]]] = {
    DEFAULT_IMAGE_BACKBONE: (224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def packaged_preprocessing(source: str | None):
    return PREPROCESSING.get(source or "")

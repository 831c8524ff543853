"""A short fine-tune after pruning or dropping layers, through the one training loop.

The compressed model is handed to `paretune.runner.finetune` through its `Seam` (instead of
loading `config.model`), trained with method `full` on the parent's training data for the given
epochs, and saved by the runner into the new run folder like any trained model. After magnitude
pruning the pruned weights are held at zero by masks during training and folded in before saving.
"""
from __future__ import annotations

from paretune.compression.base import Compressed
from paretune.compression.parent import Parent
from paretune.compression.prune_magnitude import hold_zeros, release_zeros
from paretune.config import Config, config_from_dict
from paretune.errors import ParetuneError
from paretune.runner import Run, Seam, finetune


def recovery_config(config: Config, epochs: float, overrides: list[str] | None) -> Config:
    from paretune.config.loading import apply_overrides

    raw = config.model_dump(mode="json")
    raw["method"] = {"name": "full"}
    raw["training"].update({"epochs": epochs, "max_steps": None})
    return config_from_dict(apply_overrides(raw, overrides or []))


def recover(parent: Parent, compressed: Compressed, config: Config, epochs: float,
            overrides: list[str] | None = None) -> Run:
    model, zeros = compressed.model, compressed.keep_zero

    def start(task):
        if task.label_names != parent.info["labels"]:
            raise ParetuneError(f"recovery data gives labels {task.label_names}, the model has "
                                f"{parent.info['labels']}: keep the parent's data settings")
        return model

    def wrap(trained, task):
        hold_zeros(zeros)
        return trained, task

    def unwrap(trained):
        release_zeros(zeros)
        return trained

    return finetune(recovery_config(config, epochs, overrides), seam=Seam(model=start, wrap=wrap, unwrap=unwrap))

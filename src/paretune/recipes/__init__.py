"""Runs made by a recipe of their own instead of the Trainer: few-shot (SetFit) and zero-shot.

`RECIPES` maps a method's name to a function (config) -> finished run folder; `finetune` hands a
config whose method is listed here to it. Both write an ordinary run folder (config.yaml,
data.json, metrics.json, cost.json, model/ in the embedding-head form) that eval, predict,
serve, bench-infer and the frontier read like any other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from paretune.config.schema import Config
from paretune.recipes import few_shot, zero_shot

RECIPES: dict[str, Callable[[Config], Path]] = {"few-shot": few_shot.run, "zero-shot": zero_shot.run}

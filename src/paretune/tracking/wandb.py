"""Weights & Biases, offline (no network): runs are written under `DIR/wandb` and can be
uploaded later with `wandb sync`. Needs the `wandb` package, which paretune does not install."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from paretune.tracking.base import Backend, Where, flatten


class WandbTracker:
    def __init__(self, where: Where):
        import wandb

        where.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(mode="offline", dir=str(where.dir), project=where.experiment,
                              name=where.run_name, group=where.group, reinit="create_new")

    def params(self, params: dict[str, Any]) -> None:
        self.run.config.update(flatten(params), allow_val_change=True)

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


BACKEND = Backend("wandb", "wandb", WandbTracker, "pip install wandb (paretune does not install it)")

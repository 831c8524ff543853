"""The `continual:` section: how `paretune train CONFIG --from RUN` keeps what RUN knew.

Only read when a run continues another (docs/continual.md); a fresh run ignores it. Strategies
combine: replay mixes old training rows into the new data, `l2sp` pulls every weight toward the
old run's value, `ewc` does the same weighted by how much each weight mattered to the old task
(its diagonal Fisher information). One adapter per task is `method: {name: lora}`: the old model
stays frozen underneath.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ContinualConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    replay: float = Field(0.0, ge=0, le=1, description="Fraction of the old run's training rows mixed into "
                          "the new training data (re-read from the old run's recorded data paths).")
    l2sp: float = Field(0.0, ge=0, description="Weight of the L2-SP penalty (sum of squared distances of "
                        "each weight from the old run's); 0 is off.")
    ewc: float = Field(0.0, ge=0, description="Weight of the EWC penalty (squared distances weighted by the "
                       "old task's Fisher information, scaled to mean 1); 0 is off.")
    fisher_rows: int = Field(512, ge=1, description="Old training rows the Fisher information is estimated on.")
    allow_new_labels: bool = Field(False, description="Let the new data bring labels the old run never saw; "
                                   "the head grows by one output each, the old outputs keep their weights.")
    seed: int = Field(0, description="Seed of the replayed rows' sample.")

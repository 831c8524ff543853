"""Knowledge distillation: a smaller student trained against a finished run's model.

`distill_run` (run.py) is `paretune distill`; the loss lives in loss.py as a model wrapper and a
task wrapper that the one training loop trains like any model; students are planned in
student.py; the options in options.py.
"""
from __future__ import annotations

from paretune.distillation.options import DistillOptions

__all__ = ["DistillOptions", "distill_run"]


def __getattr__(name: str):
    if name == "distill_run":
        from paretune.distillation.run import distill_run

        return distill_run
    raise AttributeError(name)

"""Sweeps: many ordinary runs over one base config, then `paretune frontier` to compare them.

`spec` reads the sweep file, `state` keeps sweep.json, `job` runs one variant, `orchestrate`
drives the backends (`local`, `ray_backend`), `optuna_search` adds hyperparameter search.
"""
from __future__ import annotations

from paretune.sweep.orchestrate import SweepResult, run_sweep
from paretune.sweep.spec import Sweep, Variant, load_sweep

__all__ = ["Sweep", "SweepResult", "Variant", "load_sweep", "run_sweep"]

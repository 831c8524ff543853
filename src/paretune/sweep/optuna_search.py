"""Hyperparameter search with Optuna's ask/tell interface, stored in SWEEP_DIR/optuna.db.

The study lives in SQLite inside the sweep folder, so a rerun continues it (its sampler sees
every earlier trial) and several workers started on the same sweep folder share it. Each trial
is an ordinary variant named trial-NNNN whose overrides are the sampled values. `n_trials`
counts every trial in the study, finished, failed or running, so reruns and extra workers
never exceed it; asking happens under the sweep lock, so they do not race past it either.

A trial whose worker died stays RUNNING in the study; the next run resumes its run folder and
reports its value then.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from paretune.errors import ConfigError, ParetuneError
from paretune.sweep.spec import SearchParam, Sweep, Variant
from paretune.sweep.state import Claim, SweepState

STUDY_FILE = "optuna.db"
log = logging.getLogger("paretune")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ParetuneError("the sweep has a `search:` section, which needs Optuna: "
                            "pip install 'paretune[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own per-trial lines
    return optuna


class Search:
    def __init__(self, sweep: Sweep, state: SweepState, direction: str):
        optuna = _optuna()
        self.sweep, self.state, self.spec = sweep, state, sweep.spec.search
        self.states = optuna.trial.TrialState
        url = f"sqlite:///{(sweep.folder / STUDY_FILE).resolve()}"
        # A generous SQLite timeout: workers sharing the file wait for each other's writes.
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
        samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        self.study = optuna.create_study(
            study_name=self.spec.study_name or sweep.name, storage=storage, direction=direction,
            sampler=samplers[self.spec.sampler](seed=self.spec.seed), load_if_exists=True,
        )
        if self.study.direction.name.lower() != direction:
            raise ParetuneError(f"{sweep.folder / STUDY_FILE}: the study {self.study.study_name} was created to "
                                f"{self.study.direction.name.lower()}, the sweep file now says {direction}")
        self.configs: dict[str, Any] = {}  # trial name -> validated config

    @property
    def path(self) -> Path:
        return self.sweep.folder / STUDY_FILE

    def counted(self) -> int:
        done = (self.states.COMPLETE, self.states.FAIL, self.states.PRUNED, self.states.RUNNING)
        return len(self.study.get_trials(deepcopy=False, states=done))

    # --- trials left RUNNING by a worker that died ------------------------------------------
    def leftover(self, skip: set[str], reclaim: bool) -> list[Claim]:
        claims = []
        with self.state.transaction() as data:
            records = data["variants"]
            for trial in self.study.get_trials(deepcopy=False, states=(self.states.RUNNING,)):
                name = trial_name(trial.number)
                record = records.get(name)
                taken = record and record.get("status") == "running" and self.state.alive(record, reclaim)
                if name in skip or taken:
                    continue
                if record is None:  # died between asking and recording: nothing ran
                    self.study.tell(trial.number, state=self.states.FAIL)
                    continue
                variant = Variant(name, record.get("overrides") or {}, trial=trial.number)
                claim = Claim(variant)
                self.state.mark_running(records, variant, claim)
                claims.append(claim)
        return claims

    # --- new trials ---------------------------------------------------------------------------
    def ask(self, limit: int) -> tuple[list[Claim], list[tuple[Variant, str]]]:
        """Up to `limit` new trials (claimed), and sampled configs that failed validation."""
        claims, invalid = [], []
        with self.state.transaction() as data:
            while len(claims) < limit and self.counted() < self.spec.n_trials:
                trial = self.study.ask()
                variant = Variant(trial_name(trial.number), self._sample(trial), trial=trial.number)
                try:
                    self.configs[variant.name] = self.sweep.build_config(variant)
                except ConfigError as err:
                    self.study.tell(trial.number, state=self.states.FAIL)
                    invalid.append((variant, str(err)))
                    continue
                claim = Claim(variant)
                self.state.mark_running(data["variants"], variant, claim)
                claims.append(claim)
        return claims, invalid

    def _sample(self, trial) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for key, param in self.spec.space.items():
            known = {**self.sweep.spec.set, **chosen}
            if param.when and not all(known.get(k) == v for k, v in param.when.items()):
                continue
            chosen[key] = suggest(trial, key, param)
        return chosen

    def tell(self, variant: Variant, outcome: dict[str, Any]) -> None:
        value = outcome.get("value")
        if outcome.get("status") == "finished" and value is not None:
            self.study.tell(variant.trial, float(value))
        else:
            self.study.tell(variant.trial, state=self.states.FAIL)

    def best(self) -> dict[str, Any] | None:
        complete = self.study.get_trials(deepcopy=False, states=(self.states.COMPLETE,))
        if not complete:
            return None
        best = self.study.best_trial
        return {"trial": trial_name(best.number), "value": best.value, "params": best.params}


def suggest(trial, key: str, param: SearchParam) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        step = int(param.step or 1)
        return trial.suggest_int(key, int(param.low), int(param.high), step=step, log=param.log)
    return trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"

"""Run a sweep: claim variants, hand them to a backend, record what happened.

The same loop drives both backends; they differ only in how a batch of jobs runs (one by one
here, or as parallel Ray Tune trials). Fixed variants (list and grid) run first, then the
search asks Optuna for trials until the study holds `n_trials`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretune.config.schema import Config
from paretune.errors import ParetuneError
from paretune.sweep.spec import Sweep, Variant
from paretune.sweep.state import Claim, SweepState, read_state
from paretune.sweep.tracked import grouped, log_frontier

log = logging.getLogger("paretune")


@dataclass
class SweepResult:
    folder: Path
    records: dict[str, dict[str, Any]]
    names: list[str]  # this sweep's variants, in order (fixed ones, then trials)
    best_trial: dict[str, Any] | None = None

    def count(self, status: str) -> int:
        return sum(self.records.get(n, {}).get("status") == status for n in self.names)


def run_sweep(sweep: Sweep, backend: str = "local", *, address: str | None = None,
              reclaim: bool = False, max_concurrent: int | None = None, track: list[str] | None = None) -> SweepResult:
    variants = sweep.variants()
    configs = sweep.check_configs(variants)  # a typo in any variant fails now, before any training
    metric, direction = main_metric(sweep, next(iter(configs.values()), None))
    state = SweepState.start(sweep)
    state.check_overrides(variants)
    executor = make_executor(backend, sweep, address=address, max_concurrent=max_concurrent)
    loop = _Loop(sweep, state, executor, metric, reclaim)
    loop.track = list(track or [])
    loop.total = _announce(sweep, variants, executor.name)
    best = None
    try:
        loop.run_fixed(variants, configs)
        if sweep.spec.search is not None:
            best = loop.run_search(direction)
    finally:
        executor.close()
    if sweep.spec.ensemble or sweep.spec.soup:
        from paretune.sweep.combined import combine_best

        combine_best(sweep, metric, direction)
    if loop.tracking:
        log_frontier(sweep.folder, loop.tracking, sweep.runs_dir)
    records = read_state(sweep.folder).get("variants", {})
    names = [v.name for v in variants] + sorted(n for n in records if n.startswith("trial-"))
    return SweepResult(folder=sweep.folder, records=records, names=names, best_trial=best)


def make_executor(backend: str, sweep: Sweep, *, address: str | None, max_concurrent: int | None):
    if backend == "local":
        from paretune.sweep.local import LocalExecutor

        return LocalExecutor()
    if backend == "ray":
        from paretune.sweep.ray_backend import RayExecutor

        given = {"address": address, "max_concurrent": max_concurrent}  # command-line options win
        options = sweep.spec.ray.model_copy(update={k: v for k, v in given.items() if v is not None})
        return RayExecutor(sweep, options)
    raise ParetuneError(f"unknown sweep backend '{backend}': use local or ray")


def main_metric(sweep: Sweep, config: Config | None) -> tuple[str, str]:
    """The metric the search optimises and the frontier ranks by, and its direction."""
    from paretune.tasks import task_class
    from paretune.tasks.base import Task

    config = config or sweep.build_config(Variant("base", {}))
    search = sweep.spec.search
    metric = (search.metric if search else None) or config.training.metric \
        or task_class(config.task.type).default_metric
    direction = (search.direction if search else None) or \
        ("minimize" if metric in Task.lower_is_better else "maximize")
    return metric, direction


class _Loop:
    def __init__(self, sweep: Sweep, state: SweepState, executor, metric: str, reclaim: bool):
        self.sweep, self.state, self.executor, self.metric = sweep, state, executor, metric
        self.reclaim = reclaim
        self.attempted: set[str] = set()  # a variant runs at most once per sweep command
        self.done = 0
        self.total = 0  # variants and trials this command expects to run, for "[done/total]"
        self.track: list[str] = []  # --track backends, added to every variant's tracking
        self.tracking: dict[str, Any] | None = None  # a tracked variant's section (for the frontier)

    def run_fixed(self, variants: list[Variant], configs: dict[str, Config]) -> None:
        bench = self.sweep.bench is not None
        self.state.recover_finished(variants, self.metric)
        while True:
            pending = [v for v in variants if v.name not in self.attempted]
            claims = self.state.claim(pending, self.executor.batch_size, bench=bench, reclaim=self.reclaim)
            if not claims:
                break
            self._execute(claims, {c.variant.name: configs[c.variant.name] for c in claims})
        busy = [v.name for v in variants if self.state.records().get(v.name, {}).get("status") == "running"
                and v.name not in self.attempted]
        if busy:
            log.info("running in another worker (not waited for): %s", ", ".join(busy))

    def run_search(self, direction: str) -> dict[str, Any] | None:
        from paretune.sweep.optuna_search import Search

        search = Search(self.sweep, self.state, direction)
        self.total = self.done + max(0, search.spec.n_trials - search.counted()) + len(
            search.study.get_trials(deepcopy=False, states=(search.states.RUNNING,)))
        log.info("search: study %s in %s, %d of %d trials so far, %s %s",
                 search.study.study_name, search.path, search.counted(), search.spec.n_trials,
                 direction, self.metric)
        while True:
            claims = search.leftover(self.attempted, self.reclaim)
            if not claims:
                claims, invalid = search.ask(self.executor.search_batch_size)
                for variant, error in invalid:
                    self.attempted.add(variant.name)
                    self._report(variant, self.state.record(variant, {"status": "failed", "error": error}))
            if not claims:  # the study holds n_trials (finished, failed, or running elsewhere)
                break
            configs = {c.variant.name: search.configs.get(c.variant.name) or self.sweep.build_config(c.variant)
                       for c in claims}
            for variant, outcome in self._execute(claims, configs):
                search.tell(variant, outcome)
        best = search.best()
        if best:
            log.info("search: best %s %s=%.4f with %s", best["trial"], self.metric, best["value"],
                     best["params"])
        return best

    def _execute(self, claims: list[Claim], configs: dict[str, Config]) -> list[tuple[Variant, dict]]:
        by_name = {c.variant.name: c for c in claims}
        jobs = [self._job(c, configs[c.variant.name]) for c in claims]
        self.attempted.update(by_name)
        results = []

        def on_done(job: dict[str, Any], outcome: dict[str, Any]) -> None:
            variant = by_name[job["name"]].variant
            self._report(variant, self.state.record(variant, outcome))
            results.append((variant, outcome))

        self.executor.run(jobs, on_done)
        return results

    def _job(self, claim: Claim, config: Config) -> dict[str, Any]:
        tracked = grouped(config.model_dump(mode="json"), self.sweep.name, claim.variant.name, self.track)
        if tracked.get("tracking", {}).get("backends"):
            self.tracking = tracked["tracking"]
        return {
            "name": claim.variant.name,
            "run_dir": str(self.sweep.run_dir(claim.variant.name).resolve()),
            "config": tracked,
            "fresh": claim.fresh,
            "bench_inference": self.sweep.bench,  # None, or bench_inference's keyword arguments
            "metric": self.metric,
            "cwd": os.getcwd(),
        }

    def _report(self, variant: Variant, record: dict[str, Any]) -> None:
        self.done += 1
        took = f" in {record['seconds']:.1f}s" if record.get("seconds") is not None else ""
        if record["status"] == "finished":
            value = record.get("value")
            shown = f"{record.get('metric')}={value:.4f}" if isinstance(value, (int, float)) else "no metric"
            how = {"resume": " (resumed)", "done": " (trained earlier)"}.get(record.get("action"), "")
            bench = record.get("bench_inference")
            extra = f", inference benchmark {bench}" if bench else ""
            log.info("[%s] %s: finished%s%s, %s%s", self._count(), variant.name, how, took, shown, extra)
        else:
            log.error("[%s] %s: FAILED%s: %s", self._count(), variant.name, took, record.get("error"))

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total >= self.done else str(self.done)


def _announce(sweep: Sweep, variants: list[Variant], backend: str) -> int:
    """Log what the sweep holds; returns how many fixed variants are left to run."""
    finished = [v.name for v in variants if (sweep.run_dir(v.name) / "metrics.json").is_file()]
    search = sweep.spec.search
    log.info("sweep %s: %d variants%s, %d finished earlier (skipped), backend %s, folder %s",
             sweep.name, len(variants), f" + {search.n_trials} search trials" if search else "",
             len(finished), backend, sweep.folder)
    return len(variants) - len(finished)

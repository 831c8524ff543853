"""The last step of a sweep that asks for it: an ensemble and/or a soup of its best variants.

    ensemble: {top_k: 3, method: weighted}
    soup: {top_k: 3, recipe: greedy}

The combined runs are written into the sweep's runs/ folder (runs/ensemble-weighted,
runs/soup-greedy), so `paretune frontier SWEEP_DIR` shows them beside the variants; with
`bench_inference`, they are benchmarked like the variants. A combination that cannot be made
(fewer than two finished variants, runs that do not share a base for a soup) is logged and
skipped: the variants the sweep trained stay its result.
"""
from __future__ import annotations

import logging
from pathlib import Path
from paretune.errors import ParetuneError
from paretune.sweep.state import read_state

log = logging.getLogger("paretune")


def best_variants(folder: Path, runs_dir: Path, metric: str, greater_is_better: bool, k: int) -> list[Path]:
    records = read_state(folder).get("variants", {})
    finished = [(r["value"], runs_dir / name) for name, r in records.items()
                if r.get("status") == "finished" and isinstance(r.get("value"), (int, float))]
    finished.sort(key=lambda pair: pair[0], reverse=greater_is_better)
    return [path for _, path in finished[:k]]


def combine_best(sweep, metric: str, direction: str) -> list[Path]:
    """Make the sweep's `ensemble:` and `soup:` runs; returns the folders written."""
    from paretune.combine.ensemble import build_ensemble
    from paretune.combine.soup import build_soup

    made = []
    steps = [(sweep.spec.ensemble, "ensemble"), (sweep.spec.soup, "soup")]
    for step, kind in steps:
        if step is None:
            continue
        runs = best_variants(sweep.folder, sweep.runs_dir, metric, direction == "maximize", step.top_k)
        rule = step.method if kind == "ensemble" else step.recipe
        target = sweep.runs_dir / f"{kind}-{rule}"
        try:
            if kind == "ensemble":
                made.append(build_ensemble(runs, rule, target, overwrite=True))
            else:
                made.append(build_soup(runs, rule, target, merge=step.merge, overwrite=True))
        except ParetuneError as err:
            log.warning("sweep %s: no %s of the best %d variants: %s", sweep.name, kind, step.top_k, err)
            continue
        if sweep.bench is not None:
            from paretune.sweep.job import bench

            bench(made[-1], dict(sweep.bench))
    return made

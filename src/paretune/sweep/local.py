"""The local backend: variants one after another in this process.

One at a time on purpose: a variant already uses every core (or the GPU) it is given, and
timings measured side by side would not be comparable. For parallel trials use the Ray
backend, or start the same sweep in several terminals or machines sharing the sweep folder.
"""
from __future__ import annotations

from typing import Any, Callable

from paretune.sweep.job import run_job

OnDone = Callable[[dict[str, Any], dict[str, Any]], None]  # (job, outcome), called as each job ends


class LocalExecutor:
    name = "local"
    # Claim one variant at a time, so workers sharing the sweep folder split the work.
    batch_size = 1
    search_batch_size = 1

    def run(self, jobs: list[dict[str, Any]], on_done: OnDone) -> None:
        for job in jobs:
            on_done(job, run_job(job))

    def close(self) -> None:
        pass

"""Server time of `paretune ui`'s heaviest pages: the runs page over 1,000 run folders, and a run
page (with the curves its chart loads) over a 100k-step metrics.jsonl. Goal: under 1 s each.

    python bench/ui_runs.py [--runs 1000] [--steps 100000]

Run folders are written the way the runner writes them (a resolved config.yaml, metrics.json,
cost.json, metrics.jsonl), small: no model. Times are the app's own handling of one request
(in-process ASGI, no network). Cold: the first request to a new app (every file read, templates
compiled; the files themselves in the OS cache), the median over --fresh new apps, in wall and in
this process's CPU seconds (the latter barely moves with other jobs on the machine). Warm: the
median of 5 more requests to the last app (files unchanged: parsed forms reused). The load
average is printed beside them: figures taken with other jobs running say "under load".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from paretune.config.loading import config_from_dict
from paretune.ui.app import create_app
from paretune.version import __version__

METHODS = ("full", "lora", "freeze", "ia3")


def write_runs(root: Path, count: int, steps: int) -> None:
    rng = random.Random(0)
    for i in range(count):
        folder = root / f"run-{i:04d}"
        folder.mkdir(parents=True)
        config = config_from_dict({
            "model": {"name_or_path": "sentence-transformers/all-MiniLM-L6-v2"}, "data": {"train": "train.csv"},
            "method": {"name": METHODS[i % len(METHODS)]}, "training": {"lr": 10 ** rng.uniform(-5, -3)},
            "output": {"dir": str(folder)}}, "bench")
        (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        if i % 10 == 9:
            continue  # every tenth run unfinished
        accuracy = rng.uniform(0.7, 0.93)
        (folder / "metrics.json").write_text(json.dumps({
            "validation": {"accuracy": accuracy, "f1_macro": accuracy - 0.01, "loss": 1 - accuracy},
            "metric": "accuracy", "steps": 300, "trainable_percent": 1.2}))
        (folder / "cost.json").write_text(json.dumps({"usd": rng.uniform(0.001, 0.5), "wall_s": rng.uniform(30, 900),
                                                      "device_hours": 0.1, "phases_s": {"train_s": 20.0}}))
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "train_loss": 1 / s, "lr": 1e-4, **({"validation": {"accuracy": accuracy}}
                                                                       if s % 100 == 0 else {})}) + "\n"
            for s in range(1, 301)))
    long = root / "run-0000"
    with open(long / "metrics.jsonl", "w") as f:
        for s in range(1, steps + 1):
            row = {"step": s, "epoch": s / 1000, "train_loss": 1 / s, "lr": 1e-4, "train_s": s * 0.05}
            if s % 500 == 0:
                row["validation"] = {"loss": 1 / s, "accuracy": 0.9, "f1_macro": 0.89,
                                     "per_class": {"negative": {"f1": 0.9}, "positive": {"f1": 0.88}}}
            f.write(json.dumps(row) + "\n")


def timed(root: Path, path: str, fresh: int) -> tuple[float, float, float, int]:
    """(cold s, cold CPU s, warm s, bytes): cold is a new app's first request, median over `fresh`
    apps; warm the median of 5 more requests to the last one."""
    cold, cold_cpu = [], []
    for _ in range(fresh):
        client = TestClient(create_app([root]))
        wall, cpu = time.perf_counter(), time.process_time()
        answer = client.get(path)
        cold.append(time.perf_counter() - wall)
        cold_cpu.append(time.process_time() - cpu)
        assert answer.status_code == 200, (path, answer.status_code)
    warm = []
    for _ in range(5):
        start = time.perf_counter()
        client.get(path)
        warm.append(time.perf_counter() - start)
    return statistics.median(cold), statistics.median(cold_cpu), statistics.median(warm), len(answer.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--fresh", type=int, default=3, help="new apps whose first request is timed (cold)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paretune-ui-bench-") as tmp:
        root = Path(tmp) / "runs"
        start = time.perf_counter()
        write_runs(root, args.runs, args.steps)
        print(f"wrote {args.runs} run folders and a {args.steps:,}-step metrics.jsonl "
              f"({(root / 'run-0000' / 'metrics.jsonl').stat().st_size / 2**20:.1f} MiB) in "
              f"{time.perf_counter() - start:.1f} s")
        TestClient(create_app([root])).get("/")  # imports and the OS file cache: not what a request costs
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        print(f"paretune {__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}, "
              f"{cores} cores, load average {load:.1f} ({'measured under load' if load > cores / 2 else 'quiet'}), "
              f"{time.strftime('%Y-%m-%d')}")
        print(f"{'page':<44} {'cold':>8} {'cold CPU':>9} {'warm':>8} {'bytes':>10}   goal < 1 s")
        for label, path in ((f"runs page, {args.runs} runs", "/"),
                            ("runs page, sorted by metric", "/?sort=quality&desc=1"),
                            (f"run page, {args.steps:,} steps", "/run/run-0000/"),
                            (f"its curves (thinned), {args.steps:,} steps", "/api/curves/run-0000")):
            cold, cold_cpu, warm, size = timed(root, path, args.fresh)
            verdict = "ok" if max(cold, warm) < 1 else "SLOW"
            print(f"{label:<44} {cold:>7.3f}s {cold_cpu:>8.3f}s {warm:>7.3f}s {size:>10,}   {verdict}")


if __name__ == "__main__":
    main()

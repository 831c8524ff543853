"""Server time of `paretune ui`'s heaviest pages: the runs page over 1,000 run folders, and a run
page (with the curves its chart loads) over a 100k-step metrics.jsonl. Goal: under 1 s each.

    python bench/ui_runs.py [--runs 1000] [--steps 100000]

Run folders are written the way the runner writes them (a resolved config.yaml, metrics.json,
cost.json, metrics.jsonl), small: no model. Times are the app's own handling of one request
(in-process ASGI, no network), the first request (every file parsed) and the median of 5 after
it (files unchanged: parsed forms reused).
"""
from __future__ import annotations

import argparse
import json
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


def timed(client: TestClient, path: str) -> tuple[float, float, int]:
    """(first request s, median of the next 5 s, bytes)."""
    start = time.perf_counter()
    answer = client.get(path)
    first = time.perf_counter() - start
    assert answer.status_code == 200, (path, answer.status_code)
    again = []
    for _ in range(5):
        start = time.perf_counter()
        client.get(path)
        again.append(time.perf_counter() - start)
    return first, statistics.median(again), len(answer.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paretune-ui-bench-") as tmp:
        root = Path(tmp) / "runs"
        start = time.perf_counter()
        write_runs(root, args.runs, args.steps)
        print(f"wrote {args.runs} run folders and a {args.steps:,}-step metrics.jsonl "
              f"({(root / 'run-0000' / 'metrics.jsonl').stat().st_size / 2**20:.1f} MiB) in "
              f"{time.perf_counter() - start:.1f} s")
        client = TestClient(create_app([root]))
        print(f"paretune {__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}, "
              f"{time.strftime('%Y-%m-%d')}")
        print(f"{'page':<44} {'first':>8} {'again':>8} {'bytes':>10}   goal < 1 s")
        for label, path in ((f"runs page, {args.runs} runs", "/"),
                            ("runs page, sorted by metric", "/?sort=quality&desc=1"),
                            (f"run page, {args.steps:,} steps", "/run/run-0000/"),
                            (f"its curves (thinned), {args.steps:,} steps", "/api/curves/run-0000")):
            first, again, size = timed(client, path)
            verdict = "ok" if max(first, again) < 1 else "SLOW"
            print(f"{label:<44} {first:>7.3f}s {again:>7.3f}s {size:>10,}   {verdict}")


if __name__ == "__main__":
    main()

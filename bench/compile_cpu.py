"""What `training.compile` (engine/compile.py) costs and earns on this CPU: start-up, steady-state
speed-up, and the run length at which compiling breaks even.

MiniLM (the packaged all-MiniLM-L6-v2) as a 2-class classifier on SST-2 sentences, batches of 32
sorted by length (widths as paretune's length buckets give them), AdamW, fp32. Each mode trains
in a fresh process (dynamo's caches and counters start empty): `plain` and `compiled` (the same
in-place torch.compile the Trainer uses, inductor unless --backend says otherwise). Per mode the
script times every step, then:

* steady step: the median of the second half of the steps (every batch width has been seen);
* start-up: the first steps' time above that steady step (compiling, plus warm-up both pay);
* speed-up: plain steady / compiled steady;
* break-even: (compiled start-up - plain start-up) / (plain steady - compiled steady) steps:
  a run shorter than that is faster without compiling ("never" when compiling is not faster).

Real run (the lead's, on a quiet machine; about 8 minutes, most of it inductor compiling MiniLM's
forward and backward for two shapes on 2 cores):

    flock /tmp/cpu.lock python bench/compile_cpu.py --steps 120

Smoke (4 steps of 4 rows with dynamo's `eager` backend: graph capture and dynamic shapes, no
AOT autograd and no C++ compile; a few minutes on a loaded machine, where aot_eager took 255 s to
capture MiniLM's two shapes): python bench/compile_cpu.py --smoke
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import SHARED, read_tsv  # noqa: E402

BATCH = 32


def batches(tokenizer, count: int, rows: int) -> list[dict]:
    """`count` length-sorted batches of SST-2 sentences, widths cycling as buckets do."""
    import torch

    examples = read_tsv(SHARED / "sst2" / "train.tsv")[: rows * count]
    examples.sort(key=lambda row: len(row[0]))
    made = []
    for start in range(0, len(examples), rows):
        chunk = examples[start:start + rows]
        encoded = tokenizer([text for text, _ in chunk], padding=True, truncation=True, max_length=128,
                            return_tensors="pt")
        made.append({**encoded, "labels": torch.tensor([int(label) for _, label in chunk])})
    order = sorted(range(len(made)), key=lambda i: (i % 4, i))  # interleave widths: no sorted sweep
    return [made[i] for i in order]


def child(mode: str, steps: int, backend: str, rows: int) -> dict:
    import torch
    import transformers

    from paretune.engine import compile as compile_module
    from paretune.models import default_model_path

    path = default_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    data = batches(tokenizer, steps, rows)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.train()
    record = None
    if mode == "compiled":
        compile_module.BACKEND = backend
        record = compile_module.compile_for_training(model, True, "cpu", steps, "none")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    times = []
    for batch in data:
        started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return {"mode": mode, "step_s": times, "threads": torch.get_num_threads(),
            "widths": sorted({int(b["input_ids"].shape[1]) for b in data}),
            "compile": record.summary() if record is not None else None}


def summarise(run: dict) -> dict:
    times = run["step_s"]
    steady = statistics.median(times[len(times) // 2:])
    startup = sum(times[: len(times) // 2]) - steady * (len(times) // 2)
    return {"steady_step_s": round(steady, 4), "startup_s": round(startup, 2), "total_s": round(sum(times), 2),
            "compile": run["compile"], "threads": run["threads"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rows", type=int, default=BATCH)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--smoke", action="store_true", help="4 steps of 4 rows with the eager backend.")
    parser.add_argument("--child", choices=["plain", "compiled"], help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.smoke:
        opts.steps, opts.rows, opts.backend = 4, 4, "eager"
    if opts.child:
        print(json.dumps(child(opts.child, opts.steps, opts.backend, opts.rows)))
        return
    runs = {}
    for mode in ("plain", "compiled"):
        command = [sys.executable, __file__, "--child", mode, "--steps", str(opts.steps), "--rows", str(opts.rows),
                   "--backend", opts.backend]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
        runs[mode] = summarise(json.loads(done.stdout.strip().splitlines()[-1]))
        print(mode, runs[mode], flush=True)
    plain, compiled = runs["plain"], runs["compiled"]
    gain = plain["steady_step_s"] - compiled["steady_step_s"]
    extra = compiled["startup_s"] - plain["startup_s"]
    result = {"backend": opts.backend, "steps": opts.steps, "rows": opts.rows, **runs,
              "speedup": round(plain["steady_step_s"] / compiled["steady_step_s"], 3),
              "extra_startup_s": round(extra, 2),
              "break_even_steps": round(extra / gain) if gain > 0 else "never"}
    print(f"compile ({opts.backend}): start-up +{extra:.1f} s, steady step {plain['steady_step_s'] * 1e3:.0f} -> "
          f"{compiled['steady_step_s'] * 1e3:.0f} ms ({result['speedup']:.2f}x), break-even after "
          f"{result['break_even_steps']} steps; graphs compiled: {(compiled['compile'] or {}).get('graphs_compiled')}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

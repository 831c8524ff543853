"""LoRA's default recipe against full fine-tuning, same data, epochs and seed, on SST-2 and CoNLL.

    OMP_NUM_THREADS=1 python bench/lora_defaults.py [--tasks sst2,conll] [--rows 2000] [--epochs 2]
        [--variant NAME=KEY=VALUE,KEY=VALUE ...]

Each run is `paretune.finetune` in a subprocess of its own (packaged MiniLM, defaults apart from
the method), scored on the whole validation set (SST-2: 872 rows, accuracy; CoNLL-2003: 3,250
sentences, entity F1). Rows: full fine-tuning, `method.name=lora` with its defaults, and any
`--variant` (method settings as dotted overrides under `method.`, e.g.
`r16=r=16,alpha=32,target_modules=all-linear`). Prints each run's score, the gap to full in
points, training seconds and trainable parameters.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import conll_subset, sst2_subset  # noqa: E402


def config(task: str, files: dict, out: Path, epochs: float) -> dict:
    data = {"train": str(files["train"]), "validation": str(files["validation"]), "max_length": 128,
            "cache_dir": str(out / "cache")}
    if task == "sst2":
        data["text_column"] = "sentence"
    return {"task": {"type": "classification" if task == "sst2" else "ner"}, "data": data,
            "training": {"epochs": epochs, "seed": 0}}


def run_one(spec_path: str) -> None:
    """In the subprocess: train one row and print its summary as the last line."""
    import paretune

    spec = json.loads(Path(spec_path).read_text())
    run = paretune.finetune(spec["config"], spec["overrides"])
    metric = run.metrics["metric"]
    print(json.dumps({"score": run.validation[metric], "metric": metric, "train_s": run.cost["phases_s"]["train_s"],
                      "trainable": run.metrics.get("trainable_params"), "lr": run.metrics.get("lr")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sst2,conll")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE,KEY=VALUE (method settings)")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args.one)
    out = args.out or Path(tempfile.mkdtemp(prefix="paretune-lora-"))
    rows = ([] if args.skip_full else [("full", ["method.name=full"])]) + [("lora (defaults)", ["method.name=lora"])]
    for item in args.variant:
        name, _, settings = item.partition("=")
        rows.append((name, ["method.name=lora"] + [f"method.{kv}" for kv in settings.split(",") if kv]))
    print("| task | run | metric | score | points vs full | train s | trainable params | lr |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in args.tasks.split(","):
        subset = sst2_subset if task == "sst2" else conll_subset
        files = subset(out / task / "data", args.rows)
        full = None
        for i, (name, overrides) in enumerate(rows):
            spec = {"config": config(task, files, out / task, args.epochs),
                    "overrides": overrides + [f"output.dir={out / task / f'run{i}'}"]}
            spec_path = out / task / f"spec{i}.json"
            spec_path.write_text(json.dumps(spec))
            done = subprocess.run([sys.executable, __file__, "--one", str(spec_path)], capture_output=True, text=True)
            if done.returncode:
                print(f"| {task} | {name} | failed: {done.stderr.strip().splitlines()[-1:]} |", flush=True)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            full = result["score"] if name == "full" else full
            gap = "-" if full is None or name == "full" else f"{100 * (result['score'] - full):+.1f}"
            print(f"| {task} | {name} | {result['metric']} | {result['score']:.4f} | {gap} | {result['train_s']:.0f} | "
                  f"{result['trainable']} | {result['lr']} |", flush=True)
    print(f"runs in {out}")


if __name__ == "__main__":
    main()

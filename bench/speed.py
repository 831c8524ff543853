"""paretune against plain Hugging Face Trainer, same model, data and epochs, in one run.

    python bench/speed.py --task sst2 --train-rows 4000 --epochs 1
    python bench/speed.py --task conll --train-rows 14041 --epochs 3        # whole CoNLL train set

Each side trains in a subprocess of its own (so peak memory is its own), one after the other,
then the script prints both sides and the ratios: training samples/s and tokens/s (evaluation
excluded), time to reach the target validation metric, final metric, peak host and device memory.
paretune runs with its defaults (token-budget batches, default learning rate, fused AdamW);
the peer as bench/peer_hf.py describes. Results go to OUT/results.json.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import conll_subset, sst2_subset  # noqa: E402


def run_ours(spec: dict) -> dict:
    import torch

    import paretune

    task = "ner" if spec["task"] == "conll" else "classification"
    data = {"train": spec["train"], "validation": spec["validation"], "max_length": spec["max_length"],
            "cache_dir": str(Path(spec["out"]) / "cache")}
    if task == "classification":
        data["text_column"] = "sentence"
    started = time.perf_counter()
    run = paretune.finetune({
        "model": {"name_or_path": spec["model"]},
        "task": {"type": task},
        "data": data,
        **({"method": spec["method"]} if spec.get("method") else {}),
        "training": {"epochs": spec["epochs"], "seed": spec["seed"],
                     "eval_every": spec["ours_eval_every"], "save_every": 10**9,
                     # Final weights, as the peer reports them (paretune's default keeps the best).
                     "load_best": False, **spec.get("ours", {})},
        "output": {"dir": str(Path(spec["out"]) / "run")},
    })
    wall_s = time.perf_counter() - started
    metric = run.metrics["metric"]
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    cost = run.cost
    return {
        "side": "paretune", "metric": metric, "final": run.validation[metric],
        "train_s": cost["phases_s"]["train_s"], "wall_s": wall_s, "samples": cost["train_samples"],
        "tokens": cost["train_tokens"],
        "history": [{"step": h["step"], "train_s": h["train_s"], metric: h["validation"][metric]}
                    for h in history if "train_s" in h],
        "lr": run.metrics["lr"], "batching": _batching(run), "precision": "fp32" if cost["precision"] == "no" else cost["precision"],
        "peak_device_mib": cost.get("peak_device_mib"),
        "versions": {"paretune": paretune.__version__, "torch": torch.__version__},
    }


def _ours_eval_every(spec: dict) -> int:
    """Steps between evaluations so that paretune evaluates as often per epoch as the peer
    (bench/peer_hf.py `_eval_steps`), the last one on the last step."""
    from transformers import AutoTokenizer

    from paretune.config.schema import TrainingConfig
    from paretune.data.batching import BatchPlan, resolve_batching
    import numpy as np

    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    if spec["task"] == "conll":
        from bench_data import read_conll

        texts = [ws for ws, _ in read_conll(spec["train"])]
        enc = tokenizer(texts, is_split_into_words=True, truncation=True, max_length=spec["max_length"])
    else:
        from bench_data import read_tsv

        enc = tokenizer([t for t, _ in read_tsv(spec["train"])], truncation=True, max_length=spec["max_length"])
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    config = TrainingConfig(**spec.get("ours", {}))
    batch_size, batch_tokens = resolve_batching(config, int(lengths.sum()), int(lengths.max()))
    steps = len(BatchPlan(lengths, batch_size=batch_size, batch_tokens=batch_tokens, shuffle=True, seed=0))
    return max(1, -(-steps // spec["evals_per_epoch"]))  # the last evaluation on the last step


def _batching(run) -> str:
    training = run.config.training
    if training.batch_size:
        return f"batch {training.batch_size}"
    return f"token budget {training.batch_tokens}"


def side_main(side: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if side == "peer":
        from peer_hf import run_peer

        result = run_peer(spec)
    else:
        result = run_ours(spec)
    result["peak_host_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    try:
        import torch

        if torch.cuda.is_available():
            result["peak_device_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    Path(spec["out"], f"{side}.json").write_text(json.dumps(result, indent=1))


def time_to_target(result: dict, target: float) -> float | None:
    for point in result["history"]:
        if point[result["metric"]] >= target:
            return point["train_s"]
    return None


def report(ours: dict, peer: dict, target: float) -> dict:
    rows = {}
    for r in (ours, peer):
        rows[r["side"]] = {
            "final": round(r["final"], 4),
            "train_s": round(r["train_s"], 1),
            "samples_per_s": round(r["samples"] / r["train_s"], 1),
            "tokens_per_s": round(r["tokens"] / r["train_s"], 0),
            "time_to_target_s": time_to_target(r, target),
            "peak_host_rss_mib": r.get("peak_host_rss_mib"),
            "peak_device_mib": r.get("peak_device_mib"),
            "lr": r["lr"], "batching": r["batching"], "precision": r["precision"],
        }
    a, b = rows["paretune"], rows["peer (HF Trainer)"]
    ratios = {
        "samples_per_s": round(a["samples_per_s"] / b["samples_per_s"], 2),
        "tokens_per_s": round(a["tokens_per_s"] / b["tokens_per_s"], 2),
        "final_metric_delta": round(a["final"] - b["final"], 4),
        "time_to_target": (round(b["time_to_target_s"] / a["time_to_target_s"], 2)
                           if a["time_to_target_s"] and b["time_to_target_s"] else None),
    }
    width = max(len(k) for k in a)
    print(f"\n{'':<{width}}  {'paretune':>24}  {'HF Trainer':>24}")
    for key in a:
        print(f"{key:<{width}}  {str(a[key]):>24}  {str(b[key]):>24}")
    print(f"\nratios (paretune / peer; time to target: peer / paretune): {json.dumps(ratios)}")
    return {"rows": rows, "ratios": ratios, "target": target}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["sst2", "conll"], default="sst2")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--validation-rows", type=int, default=None, help="default: all")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--target", type=float, default=None, help="metric for time-to-target")
    parser.add_argument("--evals-per-epoch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default=None, help="model folder; default: packaged MiniLM")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sides", default="peer,ours", help="which sides to run (peer,ours)")
    parser.add_argument("--ours", action="append", default=[],
                        help="extra paretune training setting KEY=VALUE (e.g. lr=2e-4)")
    parser.add_argument("--method", action="append", default=[],
                        help="paretune method setting KEY=VALUE (e.g. name=freeze, freeze_layers=2); default full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return side_main(args.side, args.spec)

    from paretune.models import default_model_path

    out = args.out or Path(tempfile.mkdtemp(prefix="paretune-speed-"))
    subset = sst2_subset if args.task == "sst2" else conll_subset
    files = subset(out / "data", args.train_rows, args.validation_rows)
    spec = {
        "task": args.task, "train": str(files["train"]), "validation": str(files["validation"]),
        "epochs": args.epochs, "evals_per_epoch": args.evals_per_epoch, "max_length": args.max_length,
        "model": args.model or str(default_model_path()), "seed": args.seed, "out": str(out),
        "ours": {k: _parse(v) for k, v in (item.split("=", 1) for item in args.ours)},
        "method": {k: _parse(v) for k, v in (item.split("=", 1) for item in args.method)},
    }
    # Worked out here, not in paretune's timed process: the peer's process does no such work.
    spec["ours_eval_every"] = _ours_eval_every(spec)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    results = {}
    for side in args.sides.split(","):
        print(f"--- {side} ---", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--side", side, "--spec", str(spec_path)], check=True)
        print(f"{side}: {time.perf_counter() - started:.1f} s", flush=True)
        results[side] = json.loads((out / f"{side}.json").read_text())
    if len(results) == 2:
        target = args.target if args.target is not None else math.floor(results["peer"]["final"] * 1000) / 1000
        summary = report(results["ours"], results["peer"], target)
        (out / "results.json").write_text(json.dumps({"spec": spec, **summary, "raw": results}, indent=1))
    print(f"results in {out}")


def _parse(value: str):
    import yaml

    return yaml.safe_load(value)


if __name__ == "__main__":
    main()

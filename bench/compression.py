"""Every compression method on MiniLM fine-tuned on an SST-2 subset, against its parent.

    python bench/compression.py                                  # train the parent, run every method
    python bench/compression.py --parent runs/minilm-sst2 --methods int8-dynamic onnx

The parent is the packaged all-MiniLM-L6-v2 trained one epoch on the first 2,000 rows of
../shared/data/sst2/train.tsv at lr 2e-4 (as tests/test_quality_sst2.py), scored on the full GLUE
validation set (872 rows). Each method writes runs/bench-compression/<variant> through
`compress_run` / `distill_run`, which evaluate parent and result through Predictor and time both
with bench_inference one after the other (batch-1 latency and batch-64 throughput). The table
printed at the end is the one in bench/RESULTS.md; the raw compression entries go to OUT/compression.json.
Take the CPU lock exclusively for figures you report: flock -x /tmp/paretune-cpu.lock python ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"

# name -> (method, options, recovery epochs); "distill" runs paretune distill instead.
VARIANTS: dict[str, tuple[str, dict, float]] = {
    "int8-dynamic": ("int8-dynamic", {}, 0),  # per-channel scales
    "int8-dynamic-per-tensor": ("int8-dynamic", {"per_channel": False}, 0),
    "onnx": ("onnx", {}, 0),
    "onnx-int8": ("onnx-int8", {}, 0),
    "fp16": ("fp16", {}, 0),
    "bf16": ("bf16", {}, 0),
    "prune-magnitude-50": ("prune-magnitude", {"sparsity": 0.5}, 0),
    "prune-magnitude-50-recovered": ("prune-magnitude", {"sparsity": 0.5}, 1),
    "prune-heads-25": ("prune-heads", {"heads": 0.25}, 0),
    "prune-heads-25-recovered": ("prune-heads", {"heads": 0.25}, 1),
    "drop-layers-every2": ("drop-layers", {"keep_layers": "every:2"}, 0),
    "drop-layers-every2-recovered": ("drop-layers", {"keep_layers": "every:2"}, 1),
    "distill-every2": ("distill", {"student": "teacher:layers=every:2", "epochs": 1}, 0),
}


def train_parent(out: Path) -> Path:
    import paretune

    run = paretune.finetune({
        "task": {"type": "classification"},
        "data": {"train": str(SHARED / "train.tsv"), "validation": str(SHARED / "validation.tsv"),
                 "text_column": "sentence", "max_train_rows": 2000, "cache_dir": str(out / "cache")},
        "training": {"epochs": 1, "lr": 2e-4},
        "output": {"dir": str(out / "parent"), "overwrite": True},
    })
    return run.path


def run_variant(parent: Path, name: str, out: Path, bench_seconds: float) -> dict:
    from paretune.compression.run import compress_run
    from paretune.compression.run_writer import BenchSettings
    from paretune.distillation import DistillOptions
    from paretune.distillation.run import distill_run

    method, options, recover = VARIANTS[name]
    bench = BenchSettings(max_seconds=bench_seconds)
    target = out / name
    if method == "distill":
        options = dict(options)
        student = options.pop("student")
        folder = distill_run(parent, student, DistillOptions(**options), output=target, bench=bench, overwrite=True)
    else:
        folder = compress_run(parent, method, options, output=target, recover_epochs=recover, bench=bench,
                              overwrite=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    inference = json.loads((folder / "inference.json").read_text())
    return {"variant": name, "run": str(folder), "validation_accuracy": metrics["validation"]["accuracy"],
            "compression": metrics["compression"], "inference": inference,
            "cost_step_s": json.loads((folder / "cost.json").read_text())["step"]["wall_s"]}


def table(results: list[dict]) -> str:
    lines = ["| variant | accuracy | change (points) | size MiB | size ratio | p50 ms (batch 1) | speedup "
             "| throughput /s (batch 64) | throughput ratio | step time s | checks |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        c = r["compression"]["change"]
        checks = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in r["compression"].get("checks", {}).items()
                           if k in ("max_abs_logit_diff", "sparsity", "heads_removed", "param_ratio",
                                    "kl_to_teacher_after"))
        lines.append(
            f"| {r['variant']} | {c['value']['accuracy']:.4f} | {c['metric_delta'] * 100:+.2f} "
            f"| {c['value']['size_mib']:.1f} | {c['size_ratio']:.2f} | {c['value']['latency_p50_ms']:.2f} "
            f"| {c['speedup']:.2f}x | {c['value']['throughput_per_s']:.1f} | {c['throughput_ratio']:.2f} "
            f"| {r['cost_step_s']:.0f} | {checks} |")
    parent = results[0]["compression"]["change"]["parent"] if results else None
    if parent:
        lines.append(f"\nParent (last measured): accuracy {parent['accuracy']:.4f}, {parent['size_mib']:.1f} MiB, "
                     f"p50 {parent['latency_p50_ms']:.2f} ms, {parent['throughput_per_s']:.1f} /s.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parent", type=Path, help="Finished MiniLM SST-2 run; default: train one in OUT/parent.")
    parser.add_argument("--methods", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compression"))
    parser.add_argument("--bench-seconds", type=float, default=20.0)
    args = parser.parse_args()
    from paretune.logs import setup_logging

    setup_logging()
    args.out.mkdir(parents=True, exist_ok=True)
    parent = args.parent or train_parent(args.out)
    results_file = args.out / "compression.json"
    kept = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in args.methods:
        kept[name] = run_variant(parent, name, args.out, args.bench_seconds)
        results_file.write_text(json.dumps(kept, indent=1))
    print(table([kept[name] for name in VARIANTS if name in kept]))
    print(f"\nresults: {results_file}", file=sys.stderr)


if __name__ == "__main__":
    main()

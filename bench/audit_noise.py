"""Does `paretune audit` find flipped labels, and does training on its clean copy win back accuracy?

Takes the first N SST-2 training rows (default 2,000), flips a share of their labels at random
(default 10%, fixed seed), runs `paretune audit --json --write-clean --drop labels` on the noisy
file (the command itself, in a subprocess), and reports:
  - recall@200: how many flipped rows are among the 200 highest-ranked suspect labels (bar: 50%);
  - validation accuracy of the packaged MiniLM trained on the clean, noisy and cleaned files, and
    on a control that drops as many random rows as the audit did (is it the rows, or just fewer?);
  - recovered = (cleaned - noisy) / (clean - noisy) (bar: 0.5).

    OMP_NUM_THREADS=1 python bench/audit_noise.py [--rows 2000] [--noise 0.1] [--epochs 3]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import SHARED, read_tsv  # noqa: E402


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n", escapechar=None)
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)
    return path


def make_noisy(rows, share: float, seed: int):
    flipped = sorted(random.Random(seed).sample(range(len(rows)), round(share * len(rows))))
    noisy = list(rows)
    for i in flipped:
        noisy[i] = (rows[i][0], "1" if rows[i][1] == "0" else "0")
    return noisy, {i + 1 for i in flipped}  # 1-based data rows, as the audit reports them


def run_audit(noisy: Path, clean_copy: Path, report: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "paretune", "audit", str(noisy), "--validation", str(SHARED / "sst2" / "validation.tsv"),
         "--set", "data.text_column=sentence", "--out", str(report), "--write-clean", str(clean_copy),
         "--drop", "labels", "--json"], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def train(train_file: Path, out: Path, epochs: float, seed: int) -> float:
    import paretune

    config = {
        "task": {"type": "classification"},
        "data": {"train": str(train_file), "validation": str(SHARED / "sst2" / "validation.tsv"),
                 "text_column": "sentence"},
        "training": {"epochs": epochs, "seed": seed, "save_every": 1_000_000},
        "output": {"dir": str(out), "overwrite": True},
    }
    return float(paretune.finetune(config).validation["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="Scratch folder; default a temporary one.")
    parser.add_argument("--no-train", action="store_true", help="Only the audit's recall.")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="audit-noise-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = read_tsv(SHARED / "sst2" / "train.tsv")[: args.rows]
    noisy_rows, flipped = make_noisy(rows, args.noise, args.seed)
    files = {"clean": write_tsv(out / "clean.tsv", rows), "noisy": write_tsv(out / "noisy.tsv", noisy_rows)}
    files["cleaned"] = out / "cleaned.tsv"
    files["cleaned"].unlink(missing_ok=True)
    findings, audit_s = run_audit(files["noisy"], files["cleaned"], out / "report")
    suspects = findings["suspect_labels"]
    top = {s["row"] for s in suspects[: args.top]}
    flagged = {s["row"] for s in suspects}
    result = {
        "rows": args.rows, "flipped": len(flipped), "flagged": len(flagged), "audit_seconds": round(audit_s, 1),
        f"recall_at_{args.top}": round(len(top & flipped) / len(flipped), 4),
        f"precision_at_{args.top}": round(len(top & flipped) / max(len(top), 1), 4),
        "recall_flagged": round(len(flagged & flipped) / len(flipped), 4),
        "precision_flagged": round(len(flagged & flipped) / max(len(flagged), 1), 4),
        "out_of_fold_accuracy": findings["label_probabilities"]["out_of_fold_accuracy"],
        "dropped": findings["clean_copy"]["rows_dropped"],
    }
    print(json.dumps(result), flush=True)
    if args.no_train:
        return
    # Control: the noisy file less as many random rows as the audit dropped.
    keep = sorted(random.Random(args.seed + 1).sample(range(len(noisy_rows)), len(noisy_rows) - result["dropped"]))
    files["random-drop"] = write_tsv(out / "random_drop.tsv", [noisy_rows[i] for i in keep])
    accuracy = {}
    for name in ("clean", "noisy", "cleaned", "random-drop"):
        started = time.perf_counter()
        accuracy[name] = train(files[name], out / f"run-{name}", args.epochs, args.seed)
        print(f"{name}: accuracy {accuracy[name]:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    cost = accuracy["clean"] - accuracy["noisy"]
    result.update({f"accuracy_{k}": round(v, 4) for k, v in accuracy.items()})
    result["noise_cost"] = round(cost, 4)
    result["recovered"] = round((accuracy["cleaned"] - accuracy["noisy"]) / cost, 3) if cost > 0 else None
    result["threads"] = os.environ.get("OMP_NUM_THREADS")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

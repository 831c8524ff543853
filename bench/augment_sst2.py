"""What each `data.augment` policy does to SST-2 accuracy at a few training sizes.

The packaged MiniLM, full fine-tuning, the first N rows of sst2/train.tsv, scored on the whole
GLUE validation set (872 rows) once, after the last step; the same seed and settings for every
policy, only data.augment differs. Prints one JSON line per run and a table of accuracy and the change against no augmentation.

Small sets need more passes to leave chance: `--epochs` takes one value for every size or one
per size (the same for every policy at a size).

    OMP_NUM_THREADS=1 python bench/augment_sst2.py [--sizes 200 1000 2000] [--epochs 10 4 3] [--lr 1e-4]
        [--policies none "paraphrase 0.5"]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
POLICIES = {
    "none": None,
    "dropout 0.1": {"token_dropout": 0.1},
    "swap 0.1": {"token_swap": 0.1},
    "mask 0.15": {"token_mask": 0.15},
    # Written once per row by the packaged SmolLM2-135M-Instruct and cached (data/paraphrase.py);
    # the first run at a size pays for the rows no earlier run wrote.
    "paraphrase 0.5": {"paraphrase": 0.5},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 2000])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--epochs", type=float, nargs="+", default=[10, 4, 3], help="One for all sizes, or one per size.")
    parser.add_argument("--lr", type=float, default=None, help="Peak learning rate; default paretune's.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import paretune

    out = args.out or Path(tempfile.mkdtemp(prefix="augment-"))
    if len(args.epochs) not in (1, len(args.sizes)):
        parser.error("--epochs: one value, or one per size")
    epochs = dict(zip(args.sizes, args.epochs * len(args.sizes) if len(args.epochs) == 1 else args.epochs))
    results: dict[tuple[int, str], float] = {}
    for size in args.sizes:
        for name in args.policies:
            config = {
                "task": {"type": "classification"},
                "data": {"train": str(SHARED / "sst2" / "train.tsv"), "validation": str(SHARED / "sst2" / "validation.tsv"),
                         "text_column": "sentence", "max_train_rows": size, "augment": POLICIES[name]},
                # Scored once, at the end: no picking the best epoch on the set we report.
                "training": {"epochs": epochs[size], "seed": 0, "save_every": 10**9, "eval_every": 10**9,
                             "lr": args.lr},
                "output": {"dir": str(out / f"{size}-{name.split()[0]}"), "overwrite": True},
            }
            started = time.perf_counter()
            run = paretune.finetune(config)
            results[size, name] = float(run.validation["accuracy"])
            written = json.loads((run.path / "data.json").read_text()).get("paraphrase") or {}
            print(json.dumps({"rows": size, "policy": name, "epochs": epochs[size], "accuracy": round(results[size, name], 4),
                              "seconds": round(time.perf_counter() - started),
                              **({"paraphrases_kept": written["kept"], "paraphrase_seconds": written["seconds"]}
                                 if written else {})}), flush=True)
    print("| rows | " + " | ".join(args.policies) + " |")
    print("| --- |" + " --- |" * len(args.policies))
    for size in args.sizes:
        base = results.get((size, "none"))
        cells = [f"{results[size, p]:.4f}" + ("" if p == "none" or base is None else f" ({results[size, p] - base:+.4f})")
                 for p in args.policies if (size, p) in results]
        print(f"| {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Does domain-adaptive pretraining help? MLM on unlabelled SST-2 sentences, then 500 labelled rows.

1. `task: mlm` on N unlabelled SST-2 training sentences (rows after the labelled ones; the label
   column is not read), starting from the packaged MiniLM.
2. Fine-tune on the first 500 labelled rows, once from the packaged MiniLM and once from the
   MLM run's model/, same seed and settings; both scored on the GLUE validation set (872 rows).

    OMP_NUM_THREADS=1 python bench/pretrain_sst2.py [--unlabelled 3000] [--mlm-epochs 1] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=int, default=500)
    parser.add_argument("--unlabelled", type=int, default=3000)
    parser.add_argument("--mlm-epochs", type=float, default=1)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import paretune

    out = args.out or Path(tempfile.mkdtemp(prefix="pretrain-"))
    out.mkdir(parents=True, exist_ok=True)
    lines = (SHARED / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    sentences = [line.split("\t")[0] for line in lines[1 + args.labelled: 1 + args.labelled + args.unlabelled]]
    unlabelled = out / "unlabelled.tsv"
    unlabelled.write_text("sentence\n" + "\n".join(sentences) + "\n", encoding="utf-8")
    validation = str(SHARED / "sst2" / "validation.tsv")
    started = time.perf_counter()
    mlm = paretune.finetune({
        "task": {"type": "mlm"}, "data": {"train": str(unlabelled), "text_column": "sentence"},
        "training": {"epochs": args.mlm_epochs, "seed": 0, "save_every": 1_000_000},
        "output": {"dir": str(out / "mlm"), "overwrite": True}})
    result = {"unlabelled": len(sentences), "mlm_seconds": round(time.perf_counter() - started),
              "mlm_perplexity": round(mlm.validation["perplexity"], 2),
              "mlm_masked_accuracy": round(mlm.validation["masked_accuracy"], 4),
              "mlm_usd": mlm.cost.get("usd")}
    print(json.dumps(result), flush=True)
    for name, model in (("from MiniLM", None), ("from MLM run", str(mlm.path / "model"))):
        run = paretune.finetune({
            "model": {"name_or_path": model}, "task": {"type": "classification"},
            "data": {"train": str(SHARED / "sst2" / "train.tsv"), "validation": validation,
                     "text_column": "sentence", "max_train_rows": args.labelled},
            "training": {"epochs": args.epochs, "seed": 0, "save_every": 1_000_000},
            "output": {"dir": str(out / ("base" if model is None else "dapt")), "overwrite": True}})
        result[name] = round(run.validation["accuracy"], 4)
        print(json.dumps({"fine-tune": name, "accuracy": result[name]}), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

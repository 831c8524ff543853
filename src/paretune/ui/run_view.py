"""What the run page and the compare page show of a run, from the files the run wrote.

The same files and the same breakdown keys as `paretune evaluate`'s tables
(evaluation/report.py): scalar metrics, per-class (classification) or per-type (NER) scores,
and the confusion matrix with its labels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from paretune.evaluation.report import BREAKDOWN_COLUMNS, BREAKDOWN_KEYS
from paretune.ui.catalog import Catalog, RunInfo
from paretune.ui.security import run_file

SPLITS = ("validation", "test")
# metrics.json's own facts about the run, shown beside the scores.
RUN_FACTS = ("steps", "epochs", "best_step", "stopped_early", "nan_steps", "lr", "total_params",
             "trainable_params", "trainable_percent", "optimizer_state_mib", "run_folder_bytes")
MAX_MATRIX_LABELS = 30
SAMPLES_FILE = "samples.jsonl"  # written by the runner for generative runs (runner._final_evaluation)
MAX_SAMPLES = 50
MAX_SAMPLE_LINE = 64_000  # characters of one line read: the runner cuts each text to 2,000


@dataclass
class SplitScores:
    name: str
    scalars: dict[str, Any]
    breakdown_name: str | None = None
    breakdown: dict[str, dict] = field(default_factory=dict)
    breakdown_columns: tuple[str, ...] = BREAKDOWN_COLUMNS
    matrix: list[list[int]] | None = None
    matrix_labels: list[str] = field(default_factory=list)


def split_scores(metrics: dict) -> list[SplitScores]:
    shown = []
    for split in SPLITS:
        scores = metrics.get(split)
        if not isinstance(scores, dict):
            continue
        entry = SplitScores(split, {k: v for k, v in scores.items() if _scalar(v)})
        key = next((k for k in BREAKDOWN_KEYS if isinstance(scores.get(k), dict)), None)
        if key:
            entry.breakdown_name = key.replace("_", " ")
            entry.breakdown = {name: row for name, row in scores[key].items() if isinstance(row, dict)}
        matrix = scores.get("confusion_matrix")
        if isinstance(matrix, list) and 0 < len(matrix) <= MAX_MATRIX_LABELS:
            labels = metrics.get("labels") or []
            entry.matrix = matrix
            entry.matrix_labels = [str(x) for x in labels] if len(labels) == len(matrix) else \
                [str(i) for i in range(len(matrix))]
        shown.append(entry)
    return shown


def run_page_context(catalog: Catalog, run: RunInfo) -> dict[str, Any]:
    metrics = catalog.parsed(run.path / "metrics.json") or {}
    cost = catalog.parsed(run.path / "cost.json") or {}
    return {
        "run": run,
        "config_text": _text(run.path / "config.yaml"),
        "facts": {k: metrics[k] for k in RUN_FACTS if k in metrics},
        "splits": split_scores(metrics),
        "cost": cost,
        "phases": {k.removesuffix("_s"): v for k, v in (cost.get("phases_s") or {}).items() if _scalar(v)},
        "price": cost.get("price") or {},
        "inference": catalog.parsed(run.path / "inference.json") or {},
        "data": catalog.parsed(run.path / "data.json") or {},
        "card": model_card_html(run),
        "pictures": sorted(p.name for p in run.path.glob("*.png")),
        "samples": read_samples(run.path),
    }


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    """samples.jsonl (a generative run's first validation answers, written by the runner): at most
    MAX_SAMPLES rows of prompt, reference, answer and match; a line that is not such a row is
    skipped (the file is the run's, not ours to trust). The page escapes every text."""
    path = run_file(run_dir, SAMPLES_FILE)
    if path is None:
        return []
    samples = []
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                row = _sample(line[:MAX_SAMPLE_LINE])
                if row is not None:
                    samples.append(row)
                if len(samples) == MAX_SAMPLES:
                    break
    except OSError:
        return samples
    return samples


def _sample(line: str) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("prompt", "reference", "answer")):
        return None
    return {"row": row.get("row") if isinstance(row.get("row"), int) else None, "prompt": row["prompt"],
            "reference": row["reference"], "answer": row["answer"],
            "match": row.get("match") if isinstance(row.get("match"), bool) else None}


def model_card_html(run: RunInfo) -> Markup | None:
    """README.md as HTML. Raw HTML in it is shown as text, and markdown-it refuses javascript: and
    other unsafe link targets, so a model card cannot run script in the page."""
    from markdown_it import MarkdownIt

    text = _text(run.path / "README.md")
    if text is None:
        return None
    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def flat_config(catalog: Catalog, run: RunInfo) -> dict[str, Any]:
    """config.yaml as dotted keys ("training.lr": 0.001), to line runs up key by key."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value

    walk("", catalog.parsed(run.path / "config.yaml") or {})
    return flat


def compare_context(catalog: Catalog, runs: list[RunInfo], only_differences: bool) -> dict[str, Any]:
    configs = [flat_config(catalog, run) for run in runs]
    keys = list(dict.fromkeys(k for config in configs for k in config))
    rows = [(key, [config.get(key) for config in configs]) for key in keys]
    rows = [(key, values, len({repr(v) for v in values}) > 1) for key, values in rows]
    if only_differences:
        rows = [row for row in rows if row[2]]
    metrics = [catalog.parsed(run.path / "metrics.json") or {} for run in runs]
    scores = [(m.get("validation") or {}) for m in metrics]
    names = list(dict.fromkeys(k for s in scores for k, v in s.items() if _scalar(v)))
    return {"runs": runs, "config_rows": rows, "differences": sum(1 for r in rows if r[2]),
            "only_differences": only_differences,
            "metric_rows": [(name, [s.get(name) for s in scores]) for name in names],
            "facts": [(k, [m.get(k) for m in metrics]) for k in RUN_FACTS if any(k in m for m in metrics)]}


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _text(path: Path) -> str | None:
    """A text file of the run folder; None when absent or a symlink out of the folder."""
    safe = run_file(path.parent, path.name)
    try:
        return safe.read_text(encoding="utf-8", errors="replace") if safe else None
    except OSError:
        return None

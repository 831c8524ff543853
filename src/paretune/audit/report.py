"""The audit's output folder: report.json (the findings), report.md (for people), audit.png.

The picture is drawn on a bare matplotlib Figure (Agg canvas), never pyplot, as frontier/plot.py
does, so it needs no display and changes no global state.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from paretune.errors import ParetuneError

SHOWN = 20  # rows per check in report.md; report.json holds them all
CHECKS = ("suspect_labels", "duplicates", "leaks", "outliers", "lengths")
TITLES = {
    "suspect_labels": "Likely mislabeled rows (confident learning)",
    "duplicates": "Duplicates within train (the later copy is listed)",
    "leaks": "Leaks: train rows that repeat validation/test rows",
    "outliers": "Outliers (far from their nearest training neighbours)",
    "lengths": "Rows with no words or longer than data.max_length",
}


REPORT_FILES = {"json": "report.json", "markdown": "report.md", "picture": "audit.png"}


def check_report_folder(out: Path) -> None:
    """Refuse, before any work, a folder whose report files paretune did not write: an earlier
    audit's report (its report.json holds an audit's findings) is replaced, anything else is kept."""
    if out.exists() and not out.is_dir():
        raise ParetuneError(f"--out {out} is a file: name a folder for the report")
    present = [name for name in REPORT_FILES.values() if (out / name).exists()]
    if present and not _is_audit_report(out / REPORT_FILES["json"]):
        raise ParetuneError(f"--out {out} holds {', '.join(present)} that paretune audit did not write and "
                            "would replace: choose another --out (or an empty or new folder)")


def _is_audit_report(path: Path) -> bool:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(found, dict) and {"files", "options", "suspect_labels"} <= set(found)


def write_report(findings: dict[str, Any], out: Path) -> dict[str, Path]:
    check_report_folder(out)  # again: the folder may have changed during the audit
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in REPORT_FILES.items()}
    paths["json"].write_text(json.dumps(findings, indent=2, default=_plain) + "\n")
    paths["markdown"].write_text(markdown(findings))
    draw(findings).savefig(paths["picture"], dpi=110)
    return paths


def summary(findings: dict[str, Any]) -> dict[str, int]:
    return {check: len(findings.get(check) or []) for check in CHECKS}


def markdown(findings: dict[str, Any]) -> str:
    lines = ["# Data audit", ""]
    for split, info in findings["files"].items():
        lines.append(f"- {split}: `{info['file']}`, {info['rows']} rows")
    probs = findings.get("label_probabilities")
    if probs and probs.get("warning"):  # first thing read: the suspects below are not to be acted on
        lines[1:1] = ["", f"> **Warning: the suspect labels are unreliable.** {probs['warning']}."]
    if probs:
        baseline = probs.get("majority_baseline")
        lines.append(f"- label probabilities: {probs['mode']}, out-of-fold accuracy {probs['out_of_fold_accuracy']:.1%}"
                     + (f" (largest class alone: {baseline:.1%})" if baseline is not None else ""))
    lines += ["", "| check | rows |", "| --- | --- |"]
    lines += [f"| {check} | {n} |" for check, n in summary(findings).items()]
    lines += ["", "![audit](audit.png)", ""]
    lines += _balance_lines(findings.get("balance"))
    for check in CHECKS:
        rows = findings.get(check) or []
        lines += [f"## {TITLES[check]}", ""]
        if check == "suspect_labels" and probs and probs.get("warning"):
            lines += ["**Unreliable: the audit's model is weak (see the warning at the top).**", ""]
        if not rows:
            lines += ["None found.", ""]
            continue
        lines += ["| # | file | row | score | detail | text |", "| --- | --- | --- | --- | --- | --- |"]
        for rank, row in enumerate(rows[:SHOWN], 1):
            lines.append(f"| {rank} | {row['file']} | {row['row']} | {row.get('score', '')} | "
                         f"{_detail(row)} | {_cell(row['text'])} |")
        if len(rows) > SHOWN:
            lines.append(f"\n... and {len(rows) - SHOWN} more in report.json")
        lines.append("")
    return "\n".join(lines)


def _detail(row: dict[str, Any]) -> str:
    if "suggested" in row:
        return f"label {row['label']}, model says {row['suggested']}"
    if "same_as" in row:
        other = row["same_as"]
        conflict = "" if row["same_label"] else ", different label"
        return f"{row['kind']} copy of {other['split']} row {other['row']}{conflict}"
    return row.get("problem", "")


def _balance_lines(balance: dict[str, Any] | None) -> list[str]:
    if not balance:
        return []
    train = balance["train"]
    lines = ["## Labels", "", f"Training counts: {train['counts']}; largest/smallest "
             f"{train['largest_to_smallest']}" + (" (imbalanced)" if train["imbalanced"] else "")]
    if train["missing_labels"]:
        lines.append(f"Labels with no training row: {train['missing_labels']}")
    for split, s in balance["shift"].items():
        verdict = "SHIFTED" if s["shifted"] else "no significant shift"
        lines.append(f"- train vs {split}: total variation {s['total_variation']}, p={s['p_value']} ({verdict})")
    return lines + [""]


def _cell(text: str) -> str:
    text = " ".join(str(text).split())
    return (text[:117] + "...") if len(text) > 120 else text.replace("|", "\\|")


def draw(findings: dict[str, Any]) -> Figure:
    """Left: label share per split. Right: rows found per check."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    balance = findings.get("balance")
    labels = findings.get("labels") or []
    if balance:
        shares = {"train": _share(balance["train"]["counts"], labels)}
        shares.update({split: [s["share"][label][1] for label in labels] for split, s in balance["shift"].items()})
        width = 0.8 / len(shares)
        for k, (split, share) in enumerate(shares.items()):
            left.bar(np.arange(len(labels)) + k * width, share, width, label=split)
        left.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=30, ha="right")
        left.set_ylabel("share of rows")
        left.legend()
    else:
        left.text(0.5, 0.5, "no class labels to compare", ha="center", va="center")
    left.set_title("Label distribution per split")
    counts = summary(findings)
    right.barh(list(counts), list(counts.values()), color="#d62728")
    right.invert_yaxis()
    right.set_xlabel("rows")
    right.set_title("Rows flagged per check")
    return figure


def _share(counts: dict[str, int], labels: list[str]) -> list[float]:
    total = max(sum(counts.values()), 1)
    return [counts[label] / total for label in labels]


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)

"""confusion_matrix.png: a picture of a classification run's confusion matrix, rows = true class.

Drawn on a bare matplotlib Figure (the Agg canvas), never pyplot, as frontier/plot.py does. Cells
are shaded by the share of their row (recall), so a rare class's mistakes show as clearly as a
common one's; the counts are written in the cells while they fit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_MAX_ANNOTATED = 30  # classes up to which counts are written in the cells


def draw_confusion(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(4 + 0.45 * len(labels), 24)
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=90 if len(labels) > 6 else 0)
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if len(labels) <= _MAX_ANNOTATED:
        for (row, col), count in np.ndenumerate(counts):
            axes.text(col, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if shares[row, col] > 0.5 else "black")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def draw_run_confusions(metrics: dict, labels: list[str], folder: Path) -> list[Path]:
    """confusion_matrix.png (validation) and confusion_matrix_test.png, for splits that hold one."""
    drawn = []
    for split, name in (("validation", "confusion_matrix.png"), ("test", "confusion_matrix_test.png")):
        matrix = (metrics.get(split) or {}).get("confusion_matrix")
        if isinstance(matrix, list) and matrix and len(matrix) == len(labels):
            drawn.append(draw_confusion(matrix, labels, folder / name, f"{split} confusion matrix"))
    return drawn

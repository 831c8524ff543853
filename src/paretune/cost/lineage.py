"""What a model cost with everything it was trained from: a run started from another run's model.

A run whose `model.name_or_path` names a finished paretune run (its folder, or the folder's
`model/`, e.g. DPO after SFT) starts from that run's saved, merged weights. Its cost.json then
holds the lineage's totals (`wall_s`, `device_hours`, `usd`: the parent's totals, themselves
lineages, plus this run's), this run's own figures under `step`, and the parent under `parent`:
the frontier plots what the final model cost in all, the same layout compression and distillation
write.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUMMED = ("wall_s", "device_hours", "usd")


def parent_run(source: str | None) -> Path | None:
    """The finished run a model source names (the run folder or its model/), else None."""
    if not source:
        return None
    path = Path(source).expanduser()
    run = path.parent if path.name == "model" else path
    finished = (run / "metrics.json").is_file() and (run / "model" / "config.json").is_file()
    return run if finished else None


def with_lineage(cost: dict[str, Any], parent: Path) -> dict[str, Any]:
    """`cost` (this run's cost.json) with the lineage's totals, its own figures and the parent's."""
    file = parent / "cost.json"
    before = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    total = dict(cost)
    for key in SUMMED:
        mine, theirs = cost.get(key), before.get(key)
        total[key] = None if mine is None or theirs is None else float(f"{mine + theirs:.6g}")
    total["step"] = {key: cost.get(key) for key in SUMMED}
    total["parent"] = {"run": str(parent.resolve()), **{key: before.get(key) for key in SUMMED}}
    return total

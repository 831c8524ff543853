"""Loading a local task's rows for lm-evaluation-harness (`custom_dataset: !function utils.local_jsonl`):
JSON Lines files named relative to this file's folder, so a task folder can be copied anywhere and
nothing is fetched from a hub."""
from __future__ import annotations

import json
from pathlib import Path


def local_jsonl(data_files: dict[str, str], **_metadata):
    """{split: rows} as a datasets.DatasetDict; lm-eval passes the task's metadata too (ignored)."""
    import datasets

    here = Path(__file__).resolve().parent
    splits = {}
    for split, name in data_files.items():
        path = Path(name) if Path(name).is_absolute() else here / name
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        splits[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)

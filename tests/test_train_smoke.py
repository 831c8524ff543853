"""End-to-end training on the tiny model through the Python API."""
from __future__ import annotations

import json

import paretune


def test_classification_run_learns_and_writes_folder(tiny_config):
    run = paretune.finetune(tiny_config)
    assert run.validation["accuracy"] >= 0.9
    for name in ("config.yaml", "environment.json", "metrics.json", "metrics.jsonl", "cost.json",
                 "README.md", "data.json", "model/model.safetensors", "model/config.json",
                 "model/paretune.json"):
        assert (run.path / name).is_file(), name
    history = [json.loads(l) for l in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == sorted(h["step"] for h in history)
    assert len(history) == 10  # one evaluation per epoch

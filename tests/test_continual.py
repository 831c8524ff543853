"""`train --from RUN` (continual learning) on the tiny model: lineage, labels, head growth, strategies."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import sentiment_rows, write_csv

import paretune
from paretune.continual.previous import grow_head
from paretune.continual.run import continue_from
from paretune.errors import ParetuneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def old_run(tiny_config):
    tiny_config["training"]["epochs"] = 1
    return paretune.finetune(tiny_config).path


def _new_config(tiny_config, tmp_path, rows, **continual):
    config = {**tiny_config, "output": {"dir": str(tmp_path / "continued")}, "continual": continual}
    config["data"] = {**tiny_config["data"], "train": str(write_csv(tmp_path / "new.csv", rows))}
    config["training"] = {**tiny_config["training"], "epochs": 1}
    return config


def test_continues_with_replay_l2sp_and_ewc_and_records_lineage(old_run, tiny_config, tmp_path):
    config = _new_config(tiny_config, tmp_path, sentiment_rows(40, seed=9), replay=0.25, l2sp=0.01, ewc=0.01,
                         fisher_rows=16)
    run = continue_from(old_run, config)
    lineage = json.loads((run.path / "lineage.json").read_text())
    assert lineage["continued_from"] == str(old_run) and lineage["chain"][-1]["run"] == str(old_run)
    assert lineage["replayed_rows"] == 40  # a quarter of the 160 rows the old run trained on
    assert lineage["old_task"]["before"]["accuracy"] is not None and "accuracy" in lineage["old_task"]["after"]
    assert run.config.model.name_or_path == str(old_run / "model")
    assert run.metrics["labels"] == ["negative", "positive"]
    assert "## Lineage" in (run.path / "README.md").read_text()


def test_new_labels_need_permission_and_then_grow_the_head(old_run, tiny_config, tmp_path):
    rows = sentiment_rows(30, seed=5) + [("the plot was fine i guess", "neutral")] * 6
    with pytest.raises(ParetuneError, match="allow_new_labels"):
        continue_from(old_run, _new_config(tiny_config, tmp_path, rows))
    run = continue_from(old_run, _new_config(tiny_config, tmp_path, rows, allow_new_labels=True),
                        overrides=["method.name=lora"])
    assert run.metrics["labels"] == ["negative", "positive", "neutral"]
    assert json.loads((run.path / "lineage.json").read_text())["labels_added"] == ["neutral"]


def test_grow_head_keeps_the_old_outputs():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=2)).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    before = model(input_ids=ids).logits
    grow_head(model, 2, 4)
    after = model(input_ids=ids).logits
    assert after.shape == (1, 4) and torch.allclose(after[:, :2], before)

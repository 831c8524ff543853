"""Domain-adaptive pretraining: task mlm trains on text alone; a fine-tune starts from its model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers

import paretune
from paretune.tasks.mlm import IGNORE, MlmOptions, MlmTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_masks_are_fresh_in_training_and_fixed_in_evaluation(tiny_model_dir):
    from conftest import sentiment_rows

    from paretune.data.examples import Example

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    task = MlmTask(MlmOptions(mask_rate=0.3), [])
    examples = [Example(text, None, row) for row, (text, _) in enumerate(sentiment_rows(8), 1)]
    encoded = task.encode(examples, None, tokenizer, 32)
    with torch.no_grad():
        first, second = (task.collate(encoded, [0, 1, 2], tokenizer.pad_token_id) for _ in range(2))
    assert torch.equal(first["input_ids"], second["input_ids"]) and torch.equal(first["labels"], second["labels"])
    draws = {tuple(task.collate(encoded, [0], tokenizer.pad_token_id)["labels"][0].tolist()) for _ in range(10)}
    assert len(draws) > 1
    labels = first["labels"].numpy()
    assert (labels[:, 0] == IGNORE).all() and (labels != IGNORE).any(axis=1).all()  # [CLS] never, each row some
    assert np.isin(first["input_ids"].numpy()[labels != IGNORE], [tokenizer.mask_token_id]).any()


def test_pretrain_then_fine_tune_from_it(tiny_config, tmp_path):
    pretrain = {**tiny_config, "task": {"type": "mlm"}, "output": {"dir": str(tmp_path / "mlm")},
                "training": {**tiny_config["training"], "epochs": 1}}
    pretrain["data"] = {**tiny_config["data"], "label_column": "no-such-column"}  # labels are not read
    run = paretune.finetune(pretrain)
    assert math.isfinite(run.validation["perplexity"]) and run.metrics["metric"] == "perplexity"
    tiny_config["model"]["name_or_path"] = str(run.path / "model")
    tiny_config["training"]["epochs"] = 1
    tiny_config["output"]["dir"] = str(tmp_path / "tuned")
    assert "accuracy" in paretune.finetune(tiny_config).validation

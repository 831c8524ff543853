"""data.augment: token dropout/swap/mask on training batches only."""
from __future__ import annotations

import numpy as np
import pytest
import transformers

from paretune.config import config_from_dict
from paretune.data.augment import AugmentConfig, perturb
from paretune.data.prepare import prepare_data
from paretune.errors import ConfigError


def test_perturb_keeps_the_special_tokens_and_changes_the_body():
    ids = np.array([2, 10, 11, 12, 13, 14, 15, 3])
    rng = np.random.default_rng(0)
    dropped = perturb(ids, AugmentConfig(token_dropout=0.5), 4, rng)
    assert dropped[0] == 2 and dropped[-1] == 3 and 3 <= len(dropped) < len(ids)
    masked = perturb(ids, AugmentConfig(token_mask=0.99), 4, rng)
    assert masked[0] == 2 and masked[-1] == 3 and set(masked[1:-1]) == {4}
    swapped = perturb(ids, AugmentConfig(token_swap=0.5), 4, rng)
    assert sorted(swapped) == sorted(ids) and swapped[0] == 2 and swapped[-1] == 3


def test_only_training_rows_are_perturbed_each_time_they_are_read(tiny_config, tiny_model_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    tiny_config["data"]["augment"] = {"token_dropout": 0.3}
    data = prepare_data(config_from_dict(tiny_config), tokenizer)
    reads = [tuple(data.train.input_ids[0]) for _ in range(10)]
    assert len(set(reads)) > 1
    assert data.train.lengths()[0] == len(next(iter(data.train.input_ids)))  # batching sees stored rows
    rows = data.validation.encoded.input_ids
    assert tuple(rows[0]) == tuple(rows[0])


def test_per_token_tasks_are_refused(tiny_config, tiny_model_dir, tmp_path):
    from conftest import ner_sentences, write_conll

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    tiny_config["task"] = {"type": "ner"}
    tiny_config["data"].update({"train": str(write_conll(tmp_path / "t.conll", ner_sentences(30))),
                                "validation": None, "augment": {"token_swap": 0.1}})
    with pytest.raises(ConfigError, match="per-token"):
        prepare_data(config_from_dict(tiny_config), tokenizer)

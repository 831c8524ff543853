"""Model loading: the packaged MiniLM, local folders, and clear errors."""
from __future__ import annotations

import pytest

from paretune.config.schema import ModelConfig
from paretune.errors import ParetuneError
from paretune.models import count_parameters, default_model_path, load_model, load_tokenizer
from paretune.tasks import task_class, task_options


def _task(labels=("neg", "pos")):
    return task_class("classification")(task_options(), list(labels))


def test_packaged_minilm_loads_with_a_fresh_head():
    config = ModelConfig()  # no name_or_path: the packaged all-MiniLM-L6-v2
    model = load_model(config, _task())
    tokenizer = load_tokenizer(config)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert 22_000_000 < count_parameters(model)["total_params"] < 23_500_000
    assert tokenizer("Hello World")["input_ids"][0] == tokenizer.cls_token_id
    assert default_model_path().endswith("model")


def test_missing_local_folder_and_unreachable_hub_give_clear_errors(tmp_path):
    with pytest.raises(ParetuneError, match="cannot load model"):
        load_tokenizer(ModelConfig(name_or_path=str(tmp_path / "nope")))


def test_only_safetensors_weights_are_loaded(tiny_model_dir, tmp_path):
    import shutil

    import torch

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    weights = (folder / "model.safetensors")
    from safetensors.torch import load_file

    torch.save(load_file(str(weights)), folder / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ParetuneError, match="cannot load model"):
        load_model(ModelConfig(name_or_path=str(folder)), _task())

from __future__ import annotations

import pytest

from paretune.config import load_config
from paretune.errors import ConfigError


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_overrides_types_and_relative_paths(tmp_path):
    path = _write(tmp_path, "data:\n  train: d/train.csv\ntraining:\n  lr: 1e-4\n")
    cfg = load_config(path, ["training.epochs=2", "training.eval_every=50", "method.name=freeze",
                             "method.trainable_layers=2"])
    assert cfg.training.epochs == 2 and cfg.training.eval_every == 50
    assert cfg.method.name == "freeze" and cfg.method.trainable_layers == 2
    assert cfg.data.train == str(tmp_path / "d" / "train.csv")  # relative to the config file


def test_all_errors_reported_together_with_key_and_file(tmp_path):
    path = _write(tmp_path, "data:\n  train: x.csv\n  txt_column: a\ntraining:\n  epochs: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and "data.txt_column: unknown key" in text and "training.epochs" in text


def test_switching_method_drops_the_old_methods_options(tmp_path):
    path = _write(tmp_path, "data:\n  train: x.csv\nmethod:\n  name: freeze\n  trainable_layers: 1\n")
    assert load_config(path, ["method.name=full"]).method.name == "full"


@pytest.mark.parametrize("text", ["- a\n- b\n", "data: [\n"])
def test_bad_yaml_is_a_config_error(tmp_path, text):
    with pytest.raises(ConfigError):
        load_config(_write(tmp_path, text))


def test_missing_train_file_key(tmp_path):
    with pytest.raises(ConfigError, match="data.train is required"):
        load_config(_write(tmp_path, "training:\n  epochs: 1\n"))

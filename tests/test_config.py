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


def test_method_option_without_method_name_says_which_name_to_set(tmp_path):
    path = _write(tmp_path, "data:\n  train: x.csv\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["method.trainable_layers=2"])
    text = str(err.value)
    assert "discriminator" not in text
    assert "set method.name (one of: 'full', 'freeze', 'lora'," in text
    assert "trainable_layers is an option of: freeze" in text


def test_unknown_method_name_lists_the_methods(tmp_path):
    path = _write(tmp_path, "data:\n  train: x.csv\nmethod:\n  name: lorra\n")
    with pytest.raises(ConfigError, match=r"method.name: unknown name 'lorra'; one of: 'full', 'freeze', 'lora'"):
        load_config(path)


def test_option_of_another_method_names_its_owner(tmp_path):
    path = _write(tmp_path, "data:\n  train: x.csv\nmethod:\n  name: lora\n  trainable_layers: 2\n  bogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "method.trainable_layers: unknown key for method.name=lora; trainable_layers is an option of: freeze" in text
    assert "method.bogus: unknown key for method.name=lora\n" in text + "\n"


def test_union_sections_are_found_from_the_schema_not_by_name():
    from pydantic import BaseModel, Field
    from typing import Annotated, Literal, Union

    from paretune.config.union_errors import union_variants

    class A(BaseModel):
        kind: Literal["a"] = "a"

    class B(BaseModel):
        kind: Literal["b"] = "b"
        depth: int = 1

    class Root(BaseModel):
        part: Annotated[Union[A, B], Field(discriminator="kind")] = A()

    assert union_variants(Root, ("part",)) == ("kind", {"a": A, "b": B})
    assert union_variants(Root, ("other",)) is None


def test_output_dir_is_settled_before_validation_and_kept(tmp_path):
    import re

    config = load_config(_write(tmp_path, "data:\n  train: t.csv\n"))
    assert re.fullmatch(r"runs/c-\d{8}-\d{6}", config.output.dir)  # runs/<config name>-<time>
    chosen = load_config(_write(tmp_path, "data:\n  train: t.csv\n"), [f"output.dir={tmp_path / 'mine'}"])
    assert chosen.output.dir == str(tmp_path / "mine")


def test_one_yaml_reader_words_both_mistakes(tmp_path):
    from paretune.yaml_file import read_yaml_mapping

    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML"):
        read_yaml_mapping(_write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"c.yaml: the top level must be a list of things"):
        read_yaml_mapping(_write(tmp_path, "- a\n"), "a list of things")
    assert read_yaml_mapping(_write(tmp_path, "")) == {}


def test_validation_problems_name_the_key_and_can_show_the_value():
    from pydantic import BaseModel, ConfigDict, ValidationError

    from paretune.validation import validation_problems

    class Section(BaseModel):
        model_config = ConfigDict(extra="forbid")
        lr: float

    with pytest.raises(ValidationError) as caught:
        Section.model_validate({"lr": "fast", "typo": 1})
    assert validation_problems(caught.value, readable=True) == [
        ("lr", "Input should be a valid number, unable to parse string as a number (got 'fast')"),
        ("typo", "unknown key"),
    ]


def test_a_general_eval_file_resolves_against_the_config_folder_and_shipped_stays(tmp_path):
    from paretune.config.loading import resolve_paths

    raw = {"data": {"train": "t.jsonl", "general_eval": "general.jsonl"}}
    resolve_paths(raw, tmp_path)
    assert raw["data"]["general_eval"] == str((tmp_path / "general.jsonl").resolve())
    raw = {"data": {"general_eval": "shipped"}}
    resolve_paths(raw, tmp_path)
    assert raw["data"]["general_eval"] == "shipped"

"""Tasks are plugins: every registered task holds the same properties, and a new one is one class.

The registry-wide test trains each task a few steps on the tiny model through `paretune.finetune`,
reloads the run through `paretune.Predictor` and checks it measures and predicts what the run
measured in memory. The toy task below lives in this file only: registering it is all it takes to
configure, train, save, reload and predict it (nothing in src/ names it), with its own option, its
own extra model input (token_type_ids) and its own collation.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (ner_sentences, sentiment_rows, tiny_vit, write_conll, write_csv, write_images,
                      write_multilabel_images)
from pydantic import Field

import paretune
from paretune import Predictor
from paretune.config import config_from_dict
from paretune.data.collation import collate_text, pad_rows
from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.engine.checkpoint import LoopState
from paretune.errors import ConfigError
from paretune.tasks import TASKS, Task, TaskOptions, register_task, unregister_task
from paretune.tasks.base import tokenize_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILT_IN = list(TASKS)  # collected before the toy task registers


# --- a toy task, defined outside src/ ------------------------------------------------------------
class LengthBucketOptions(TaskOptions):
    type: Literal["length-bucket"] = "length-bucket"
    bucket_width: int = Field(4, ge=1, description="Words per bucket.")


class LengthBucketTask(Task):
    """How long is the text? The label column holds its word count; the classes are buckets of
    `bucket_width` words. The model also gets token_type_ids: 1 on the text's second half."""

    name = "length-bucket"
    options = LengthBucketOptions
    config: LengthBucketOptions
    auto_model = "AutoModelForSequenceClassification"
    default_metric = "accuracy"
    metric_names = ("accuracy",)
    model_inputs = ("input_ids", "attention_mask", "token_type_ids")
    min_labels = 2
    problem_type = "single_label_classification"
    read_logits = "model.config.id2label[logits.argmax(-1).item()]  # buckets of {bucket_width} words"

    @classmethod
    def infer_labels(cls, examples, config: LengthBucketOptions) -> list[str]:
        buckets = sorted({int(float(ex.label)) // config.bucket_width for ex in examples})
        return [f"{b * config.bucket_width}+" for b in range(buckets[-1] + 1)] if buckets else []

    def parse_label(self, raw: Any) -> int:
        bucket = int(float(raw)) // self.config.bucket_width
        if not 0 <= bucket < len(self.label_names):
            raise ValueError(f"word count {raw!r} is outside the buckets {self.label_names}")
        return bucket

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        ids = tokenize_texts(tokenizer, [ex.text for ex in examples], max_length)
        halves = [(np.arange(len(row)) >= len(row) // 2).astype(np.int32) for row in ids]
        labels = None if targets is None else np.asarray(targets, dtype=np.int64)
        return Encoded(input_ids=ids, token_type_ids=halves, labels=labels)

    def collate(self, encoded, indices, pad_id) -> dict[str, torch.Tensor]:
        batch = collate_text(encoded, indices, pad_id)
        width = batch["input_ids"].shape[1]
        batch["token_type_ids"] = torch.from_numpy(pad_rows([encoded.token_type_ids[i] for i in indices], width, 0))
        return batch

    def loss(self, logits, labels) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)

    def outputs(self, logits, batch) -> list[np.ndarray]:
        return list(torch.softmax(logits.float(), dim=-1).cpu().numpy())

    def metrics(self, outputs, targets) -> dict[str, Any]:
        return {"accuracy": float(np.mean([int(np.argmax(o)) == t for o, t in zip(outputs, targets)]))}

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        best = int(np.argmax(output))
        return {"bucket": self.label_names[best], "score": float(output[best])}


@pytest.fixture()
def length_bucket():
    register_task(LengthBucketTask)
    yield LengthBucketTask
    unregister_task(LengthBucketTask.name)


def _length_rows(n: int, seed: int) -> list[tuple[str, int]]:
    return [(text, len(text.split())) for text, _ in sentiment_rows(n, seed)]


# --- data for every task: a new task adds its maker here, or the registry test fails ---------------
def _classification(folder: Path) -> tuple[dict, dict]:
    return {}, {"train": write_csv(folder / "train.csv", sentiment_rows(48, 1)),
                "validation": write_csv(folder / "validation.csv", sentiment_rows(16, 2))}


def _multilabel(folder: Path) -> tuple[dict, dict]:
    def rows(n, seed):
        return [(text, label + (",long" if len(text.split()) > 6 else "")) for text, label in sentiment_rows(n, seed)]
    return {}, {"train": write_csv(folder / "train.csv", rows(48, 1)),
                "validation": write_csv(folder / "validation.csv", rows(16, 2))}


def _regression(folder: Path) -> tuple[dict, dict]:
    def rows(n, seed):
        return [(text, len(text.split()) / 4) for text, _ in sentiment_rows(n, seed)]
    return {}, {"train": write_csv(folder / "train.csv", rows(48, 1)),
                "validation": write_csv(folder / "validation.csv", rows(16, 2))}


def _ner(folder: Path) -> tuple[dict, dict]:
    return {"tag_scheme": "iob2"}, {"train": write_conll(folder / "train.conll", ner_sentences(48, 1)),
                                    "validation": write_conll(folder / "validation.conll", ner_sentences(16, 2))}


def _generation(folder: Path) -> tuple[dict, dict]:
    def rows(n, seed):
        return "".join(json.dumps({"prompt": text, "completion": label}) + "\n" for text, label in sentiment_rows(n, seed))
    (folder / "train.jsonl").write_text(rows(48, 1))
    (folder / "validation.jsonl").write_text(rows(16, 2))
    return {"generate_rows": 4, "max_new_tokens": 2}, {"train": folder / "train.jsonl",
                                                       "validation": folder / "validation.jsonl"}


def _preference(folder: Path) -> tuple[dict, dict]:
    def rows(n, seed):
        return "".join(json.dumps({"prompt": text, "chosen": label, "rejected": "not " + label}) + "\n"
                       for text, label in sentiment_rows(n, seed))
    (folder / "train.jsonl").write_text(rows(48, 1))
    (folder / "validation.jsonl").write_text(rows(16, 2))
    # ORPO needs no reference model: `paretune eval` of a finished run has none (DPO's rewards there are None).
    # A tiny Llama: preference runs train LoRA by default, and peft's LoRA on a BERT used as a decoder
    # (the other text tasks' tiny model) is no case a user meets.
    from generation_fixtures import tiny_llama_dir

    return {"loss": {"name": "orpo"}, "generate_rows": 4, "max_new_tokens": 2}, {
        "train": folder / "train.jsonl", "validation": folder / "validation.jsonl",
        "model": tiny_llama_dir(folder / "llama")}


def _image_classification(folder: Path) -> tuple[dict, dict]:
    # Its own tiny model (a ViT) and its own prediction inputs (image paths).
    train, validation = write_images(folder / "train", 24, 1), write_images(folder / "validation", 8, 2)
    inputs = [str(p) for p in sorted((folder / "validation" / "dark").glob("*.png"))[:3]]
    return {"workers": 0}, {"train": train, "validation": validation, "model": tiny_vit(folder / "vit"),
                            "inputs": inputs}


def _image_multilabel(folder: Path) -> tuple[dict, dict]:
    train = write_multilabel_images(folder / "train", 24, 1)
    validation = write_multilabel_images(folder / "validation", 9, 2)
    inputs = [str(folder / "validation" / "images" / f"00{i}.png") for i in range(3)]
    return {"workers": 0}, {"train": train, "validation": validation, "model": tiny_vit(folder / "vit"),
                            "inputs": inputs}


def _mlm(folder: Path) -> tuple[dict, dict]:
    return _classification(folder)  # text is what counts; the label column is not read


def _kg_completion(folder: Path) -> tuple[dict, dict]:
    from test_kg import tiny_graph  # a dozen entities, three relations, entities.tsv beside them

    files = tiny_graph(folder / "graph")
    return {}, {"train": files["train"], "validation": files["validation"],
                "inputs": ["dog\t_hypernym", "cow\t_lives_in", "cat | _lives_in"]}


DATA = {"classification": _classification, "multilabel": _multilabel, "regression": _regression, "ner": _ner,
        "generation": _generation, "image-classification": _image_classification,
        "image-multilabel": _image_multilabel, "mlm": _mlm, "preference": _preference,
        "kg-completion": _kg_completion}


def _config(model_dir: Path, folder: Path, task: str, options: dict, files: dict) -> dict:
    return {
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": task, **options},
        "data": {**{k: str(v) for k, v in files.items()}, "max_length": 24, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 3, "batch_size": 16, "lr": 1e-3, "seed": 3, "eval_every": 3,
                     "save_every": 10_000, "load_best": False},
        "output": {"dir": str(folder / "run")},
    }


def _assert_same_numbers(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        if isinstance(value, float) and math.isfinite(value):
            assert got[key] == pytest.approx(value, abs=1e-5), key
        elif isinstance(value, (int, str)):
            assert got[key] == value, key


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_task_trains_saves_reloads_and_predicts_the_same(name, tiny_model_dir, tmp_path):
    assert name in DATA, f"task {name!r} has no data maker in tests/test_task_plugins.py: add one"
    options, files = DATA[name](tmp_path)
    model_dir, inputs = files.pop("model", tiny_model_dir), files.pop("inputs", None)
    run = paretune.finetune(_config(model_dir, tmp_path, name, options, files))
    assert run.metrics["steps"] == 3
    assert type(run.config.task) is TASKS[name].options

    predictor = Predictor.load(run.path)  # the task comes back from the saved config
    assert type(predictor.task) is TASKS[name] and predictor.task.label_names == run.metrics["labels"]
    _assert_same_numbers(predictor.evaluate(files["validation"]), run.validation)
    inputs = inputs or ([words for words, _ in ner_sentences(3, 5)] if TASKS[name].word_level else
                        [text for text, _ in sentiment_rows(3, 5)])
    first = predictor.predict(inputs)
    assert len(first) == 3 and first == Predictor.load(run.path).predict(inputs)


def test_a_task_from_outside_src_trains_saves_reloads_and_predicts(length_bucket, tiny_model_dir, tmp_path):
    files = {"train": write_csv(tmp_path / "train.csv", _length_rows(64, 1)),
             "validation": write_csv(tmp_path / "validation.csv", _length_rows(16, 2))}
    config = _config(tiny_model_dir, tmp_path, "length-bucket", {"bucket_width": 3}, files)
    run = paretune.finetune(config)
    assert run.config.task.bucket_width == 3
    assert run.metrics["labels"] == ["0+", "3+", "6+", "9+"]
    assert {"loss", "accuracy"} <= set(run.validation)

    saved = run.path / "config.yaml"
    assert "bucket_width: 3" in saved.read_text()
    predictor = Predictor.load(run.path)
    assert isinstance(predictor.task, LengthBucketTask) and predictor.task.config.bucket_width == 3
    _assert_same_numbers(predictor.evaluate(files["validation"]), run.validation)
    texts = [text for text, _ in _length_rows(4, 7)]
    predictions = predictor.predict(texts)
    assert [set(p) for p in predictions] == [{"bucket", "score"}] * 4
    assert predictions == Predictor.load(run.path).predict(texts)
    assert "buckets of 3 words" in (run.path / "README.md").read_text()  # its own model card line


def test_the_extra_model_input_reaches_the_model(length_bucket, tiny_model_dir, tmp_path):
    """token_type_ids change the logits: were they dropped, both predictions would agree."""
    files = {"train": write_csv(tmp_path / "train.csv", _length_rows(64, 1)),
             "validation": write_csv(tmp_path / "validation.csv", _length_rows(16, 2))}
    run = paretune.finetune(_config(tiny_model_dir, tmp_path, "length-bucket", {}, files))
    predictor = Predictor.load(run.path)
    encoded = predictor.task.encode([Example("the film was really good", None, 1)], None, predictor.tokenizer, 24)
    batch = predictor.task.collate(encoded, [0], predictor.pad_id)
    assert batch["token_type_ids"].tolist() == [encoded.token_type_ids[0].tolist()]
    with torch.no_grad():
        given = predictor.model(**{k: batch[k] for k in LengthBucketTask.model_inputs}).logits
        zeros = predictor.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(given, zeros)


def test_unregistered_task_types_are_config_errors(length_bucket):
    unregister_task("length-bucket")
    with pytest.raises(ConfigError, match=r"task.type: unknown type 'length-bucket'"):
        config_from_dict({"data": {"train": "t.csv"}, "task": {"type": "length-bucket"}})
    register_task(LengthBucketTask)
    assert config_from_dict({"data": {"train": "t.csv"}, "task": {"type": "length-bucket"}}).task.bucket_width == 4
    with pytest.raises(ConfigError, match=r"task.bucket_width"):
        config_from_dict({"data": {"train": "t.csv"}, "task": {"type": "length-bucket", "bucket_width": 0}})


def test_options_of_another_task_are_refused_unless_from_before_plugins():
    with pytest.raises(ConfigError, match=r"task.buckets: unknown key"):
        config_from_dict({"data": {"train": "t.csv"}, "task": {"type": "classification", "buckets": 3}})
    # Configs saved before tasks were plugins hold every task's keys: they still load.
    saved = {"type": "classification", "labels": ["a", "b"], "label_delimiter": ",", "tag_scheme": "auto",
             "label_all_subwords": False, "threshold": 0.5}
    config = config_from_dict({"data": {"train": "t.csv"}, "task": saved})
    assert config.task.model_dump() == {"type": "classification", "labels": ["a", "b"]}
    assert config_from_dict({"data": {"train": "t.csv"}, "task": {"labels": ["a", "b"]}}).task.type == "classification"


def test_a_task_needs_options_typed_by_its_name():
    class Unnamed(LengthBucketTask):
        name = "other-name"

    with pytest.raises(ValueError, match="other-name"):
        register_task(Unnamed)
    assert "other-name" not in TASKS


def test_checkpoints_from_before_typed_loop_state_still_load():
    saved = {"step": 4, "epoch": 1, "extra": {"nan_streak": 2, "eval_seconds": 1.5, "last_eval_step": 4,
                                              "train_loss_sums": [[0.5, 2, "float32"]]}}
    state = LoopState.from_saved(saved)
    assert (state.step, state.nan_streak, state.eval_seconds, state.last_eval_step) == (4, 2, 1.5, 4)
    assert state.train_loss_sums == [[0.5, 2, "float32"]]
    assert LoopState.from_saved(json.loads(json.dumps({"step": 1}))).last_eval_step is None

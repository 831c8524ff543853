"""The `paretune` command end to end: train, eval and predict on one shared tiny run.

`paretune train` runs once per module in a subprocess (the installed console script); `eval`
and `predict` then run side by side on its run folder. What the saved model means is checked
in this process: plain `transformers` loads it and agrees with `Predictor`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ner_sentences, sentiment_rows, write_conll, write_csv

import paretune
from paretune import Predictor

TEXTS = ["this film was really good", "a dull and boring plot", "the music is lovely",
         "that ending was horrible", "the cast was superb and the story fine"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def paretune_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    beside = Path(sysconfig.get_path("scripts")) / "paretune"
    executable = str(beside) if beside.is_file() else shutil.which("paretune")
    assert executable, "the `paretune` command is not installed: pip install -e ."
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as one_torch_thread does in this process
    done = subprocess.run([executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"paretune {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def last_line_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def trained(folder: Path, tiny_model_dir: Path) -> tuple[Path, dict]:
    """`paretune train CONFIG --json` on the toy sentiment task: (run folder, printed JSON)."""
    write_csv(folder / "train.csv", sentiment_rows(160, seed=1))
    write_csv(folder / "validation.csv", sentiment_rows(40, seed=2))
    config = folder / "sentiment.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_model_dir)},
        # Relative data paths resolve against the config's folder, not the working directory.
        "data": {"train": "train.csv", "validation": "validation.csv", "max_length": 32,
                 "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 60, "batch_size": 16, "lr": 1e-3, "warmup_ratio": 0.0, "seed": 7,
                     "save_every": 10_000},
    }))
    run_dir, elsewhere = folder / "run", folder / "elsewhere"
    elsewhere.mkdir()
    done = paretune_command("train", str(config), "--set", f"output.dir={run_dir}", "--json", cwd=elsewhere)
    return run_dir, last_line_json(done.stdout)


def test_train_json_holds_validation_metrics(trained):
    run_dir, printed = trained
    assert Path(printed["run"]) == run_dir
    assert 0.0 <= printed["validation"]["accuracy"] <= 1.0
    assert printed["validation"]["loss"] > 0
    assert printed["steps"] == 60
    assert printed == {**json.loads((run_dir / "metrics.json").read_text()), "run": str(run_dir)}


@pytest.fixture(scope="module")
def eval_and_predict(trained, folder) -> dict[str, subprocess.CompletedProcess]:
    """`paretune eval` and `paretune predict` on the trained run, run side by side."""
    run_dir, _ = trained
    inputs = folder / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS), encoding="utf-8")
    commands = {
        "eval": ["eval", str(run_dir), "--data", str(folder / "validation.csv"), "--json"],
        "predict": ["predict", str(run_dir), "--input", str(inputs), "--output", str(folder / "preds.jsonl")],
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(lambda args: paretune_command(*args, cwd=folder), commands.values())
        return dict(zip(commands, done))


def test_eval_prints_the_same_metrics_as_training(trained, eval_and_predict):
    _, printed = trained
    metrics = last_line_json(eval_and_predict["eval"].stdout)
    assert metrics["accuracy"] == pytest.approx(printed["validation"]["accuracy"])
    assert metrics["loss"] == pytest.approx(printed["validation"]["loss"], rel=1e-4)


def test_predict_writes_one_line_per_input(trained, eval_and_predict, folder):
    run_dir, _ = trained
    lines = (folder / "preds.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(TEXTS)
    labels = json.loads((run_dir / "metrics.json").read_text())["labels"]
    for row, (line, text) in enumerate(zip(lines, TEXTS), start=1):
        prediction = json.loads(line)
        assert (prediction["row"], prediction["text"]) == (row, text)
        assert prediction["label"] in labels
        assert 1 / len(labels) <= prediction["score"] <= 1.0  # the best of the label probabilities
    assert f"wrote {len(TEXTS)} predictions" in eval_and_predict["predict"].stdout


def test_saved_model_loads_with_plain_transformers(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir, _ = trained
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    probabilities = torch.softmax(logits, dim=-1)

    predictions = Predictor.load(run_dir, device="cpu").predict(TEXTS)
    assert [p["label"] for p in predictions] == [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    best = probabilities.max(-1).values.tolist()
    assert [p["score"] for p in predictions] == pytest.approx(best, abs=1e-5)


def test_second_run_on_the_same_data_hits_the_tokenization_cache(trained, folder, tiny_model_dir):
    run_dir, _ = trained
    assert json.loads((run_dir / "data.json").read_text())["tokenization_cache_hit"] is False
    again = paretune.finetune(str(folder / "sentiment.yaml"), overrides=[
        "training.max_steps=1", f"output.dir={folder / 'run-again'}",
    ])
    assert json.loads((again.path / "data.json").read_text())["tokenization_cache_hit"] is True


# --- NER on raw text ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("cli-ner")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "task": {"type": "ner"},
        "data": {"train": str(write_conll(folder / "train.conll", ner_sentences(200, seed=1))),
                 "validation": str(write_conll(folder / "validation.conll", ner_sentences(40, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        # A constant, high rate learns which words are names in 40 steps.
        "training": {"max_steps": 40, "batch_size": 16, "lr": 3e-3, "scheduler": "constant",
                     "warmup_ratio": 0.0, "seed": 7, "eval_every": 40, "save_every": 10_000},
        "output": {"dir": str(folder / "run")},
    })
    # Two names in a row are one entity typed by the first, which word identity cannot tell,
    # so f1 stays near 0.55; above 0.4 the model finds single names.
    assert run.validation["f1"] > 0.4, run.validation
    return run.path


def test_ner_predictions_on_raw_text_point_at_characters(ner_run):
    texts = ["john met mary in paris.", "  alice ,  then   berlin  and google!", "the film was dull"]
    predictions = Predictor.load(ner_run, device="cpu").predict(texts)

    found = [entity for prediction in predictions for entity in prediction["entities"]]
    assert {entity["text"] for entity in found} >= {"john", "mary", "paris", "alice", "berlin"}
    for text, prediction in zip(texts, predictions):
        for entity in prediction["entities"]:
            assert text[entity["start"]:entity["end"]] == entity["text"], (text, entity)
            assert entity["type"] in {"PER", "LOC", "ORG"}
            assert 0.0 <= entity["score"] <= 1.0

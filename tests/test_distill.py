"""Knowledge distillation on tiny models: the student moves toward the teacher, through the one loop.

A 2-layer teacher is trained once per module for sequence classification and once for NER;
students are a one-block copy of the teacher (teacher:layers=...) or a narrower model from a
folder, which exercises hidden-state matching through a learnt projection.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from conftest import ner_sentences, sentiment_rows, write_conll, write_csv

import paretune
from paretune import Predictor
from paretune.compression.run import compress_run
from paretune.compression.run_writer import BenchSettings
from paretune.distillation import DistillOptions
from paretune.distillation.loss import DistillationModel, soft_loss
from paretune.distillation.run import distill_run
from paretune.errors import ParetuneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_BENCH = BenchSettings(enabled=False)


def train_teacher(folder: Path, model_dir: Path, task: str) -> Path:
    if task == "ner":
        data = {"train": str(write_conll(folder / "train.conll", ner_sentences(120, seed=1))),
                "validation": str(write_conll(folder / "validation.conll", ner_sentences(30, seed=2)))}
    else:
        data = {"train": str(write_csv(folder / "train.csv", sentiment_rows(160, seed=1))),
                "validation": str(write_csv(folder / "validation.csv", sentiment_rows(40, seed=2)))}
    return paretune.finetune({
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": task},
        "data": {**data, "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"epochs": 10, "batch_size": 16, "lr": 1e-3, "seed": 7, "warmup_ratio": 0.0, "load_best": False,
                     "save_every": 10_000},
        "output": {"dir": str(folder / f"teacher-{task}")},
    }).path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_model_dir) -> Path:
    return train_teacher(tmp_path_factory.mktemp("distill"), tiny_model_dir, "classification")


@pytest.fixture(scope="module")
def narrow_student(tmp_path_factory, tiny_model_dir) -> Path:
    """An untrained 1-layer BERT of width 16 with the teacher's tokenizer (same vocabulary)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("narrow")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    vocab = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    # A wider initialization than BERT's 0.02 gets the toy model off its initial plateau in tens
    # of steps rather than hundreds.
    config = BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=0, initializer_range=0.2)
    torch.manual_seed(1)
    BertModel(config).save_pretrained(folder)
    return folder


def test_student_from_teacher_layers_trains_through_the_one_loop(teacher, tmp_path):
    options = DistillOptions(temperature=2.0, epochs=3)
    out = distill_run(teacher, "teacher:layers=1", options, output=tmp_path / "student", bench=NO_BENCH)
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["compression"]
    assert entry["method"] == "distill" and entry["parent"] == str(teacher)
    assert entry["settings"]["layers"] == [1] and entry["settings"]["temperature"] == 2.0
    checks = entry["checks"]
    # A copy of teacher blocks starts next to the teacher; the label term then makes it more
    # confident than the teacher, so here only its presence is checked (the fresh students
    # below show the teacher pulling a student toward it).
    assert {"kl_to_teacher_before", "kl_to_teacher_after"} <= set(checks)
    assert checks["param_ratio"] < 1
    assert metrics["steps"] == 30 and metrics["validation"]["accuracy"] >= 0.8
    assert json.loads((out / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    assert not any(k.startswith("teacher.") for k in _saved_keys(out))  # the student alone is saved
    assert Predictor.load(out).predict(["a lovely film"])[0]["label"] in ("negative", "positive")
    assert "distill" in (out / "README.md").read_text()


def _saved_keys(run_dir: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(run_dir / "model" / "model.safetensors"), "pt") as f:
        return list(f.keys())


def test_distillation_brings_a_fresh_narrow_student_to_the_teacher(teacher, narrow_student, tmp_path):
    """No labels at all (hard_weight 0): only the teacher's logits and hidden states teach."""
    options = DistillOptions(temperature=2.0, hidden_weight=0.1, soft_weight=1.0, hard_weight=0.0, epochs=15)
    out = distill_run(teacher, str(narrow_student), options, output=tmp_path / "narrow", bench=NO_BENCH,
                      overrides=["training.lr=3e-3"])
    metrics = json.loads((out / "metrics.json").read_text())
    checks = metrics["compression"]["checks"]
    assert checks["kl_to_teacher_after"] < 0.5 * checks["kl_to_teacher_before"]
    assert metrics["validation"]["accuracy"] >= 0.8  # learnt the task from the teacher alone
    assert json.loads((out / "model" / "config.json").read_text())["hidden_size"] == 16
    assert not any("projection" in k for k in _saved_keys(out))


def test_distillation_loss_pieces(teacher):
    model = Predictor.load(teacher, device="cpu").model
    logits = torch.randn(3, 2)
    mask = torch.ones(3, 5)
    assert float(soft_loss("softmax", logits, logits, mask, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_loss("softmax", logits, -logits, mask, 2.0)) > 0
    token_logits = torch.randn(2, 4, 3)
    padded = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    changed = token_logits.clone()
    changed[0, 2:] += 5.0  # differences at padding do not count
    assert float(soft_loss("softmax", changed, token_logits, padded, 1.0)) == pytest.approx(0.0, abs=1e-6)
    wrapper = DistillationModel(model, Predictor.load(teacher, device="cpu").model, DistillOptions())
    wrapper.train()
    assert wrapper.student.training and not wrapper.teacher.training
    assert not any(p.requires_grad for p in wrapper.teacher.parameters())


def test_bad_students_are_refused(teacher, narrow_student, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    other = shutil.copytree(narrow_student, tmp_path / "other-vocabulary")
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["zzzword"])
    tokenizer.save_pretrained(other)
    with pytest.raises(ParetuneError, match="reads its inputs differently"):
        distill_run(teacher, str(other), output=tmp_path / "c", bench=NO_BENCH)
    with pytest.raises(ParetuneError, match="teacher:layers=0,2,4"):
        distill_run(teacher, "teacher:blocks=1", output=tmp_path / "a", bench=NO_BENCH)
    with pytest.raises(ParetuneError, match="keeps \\[7\\]"):
        distill_run(teacher, "teacher:layers=7", output=tmp_path / "b", bench=NO_BENCH)
    with pytest.raises(ValidationError, match="all 0"):
        DistillOptions(soft_weight=0, hard_weight=0, hidden_weight=0)


def test_ner_distillation_and_int8(tmp_path_factory, tiny_model_dir, narrow_student, tmp_path):
    """Token classification through both paths: a distilled student and an int8 copy."""
    ner_teacher = train_teacher(tmp_path_factory.mktemp("ner"), tiny_model_dir, "ner")
    out = distill_run(ner_teacher, str(narrow_student), DistillOptions(epochs=10, hidden_weight=0.1),
                      output=tmp_path / "ner-student", bench=NO_BENCH)
    checks = json.loads((out / "metrics.json").read_text())["compression"]["checks"]
    assert checks["kl_to_teacher_after"] < 0.5 * checks["kl_to_teacher_before"]
    assert json.loads((out / "metrics.json").read_text())["compression"]["change"]["metric"] == "f1"
    quantized = compress_run(ner_teacher, "int8-dynamic", output=tmp_path / "ner-int8", bench=NO_BENCH)
    metrics = json.loads((quantized / "metrics.json").read_text())
    assert metrics["compression"]["change"]["metric"] == "f1"
    assert abs(metrics["compression"]["change"]["metric_delta"]) <= 0.1
    sentence = ["john", "was", "in", "paris"]
    words = Predictor.load(quantized).predict([sentence], all_scores=True)[0]["tags"]
    reference = Predictor.load(ner_teacher, device="cpu").predict([sentence], all_scores=True)[0]["tags"]
    assert len(words) == 4 and words == reference


def test_distill_command(teacher, tmp_path):
    from typer.testing import CliRunner

    from paretune.cli import _register, app

    _register()
    out = tmp_path / "cli-student"
    result = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--student", "teacher:layers=first:1",
                                      "--epochs", "1", "--temperature", "3", "--output", str(out), "--no-bench",
                                      "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["run"] == str(out) and printed["settings"]["temperature"] == 3.0
    assert printed["settings"]["layers"] == [0]

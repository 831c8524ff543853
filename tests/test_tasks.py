"""Every task trains end to end on the tiny model through `paretune.finetune(dict)`.

Only the classification run is long enough to learn (about 100 steps); the others run a few
steps, enough to prove that their labels parse, their heads and losses fit together and their
metrics come out. NER sub-word alignment is checked on `NerTask.encode` directly.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import NEGATIVE, POSITIVE, ner_sentences, sentiment_rows, write_conll, write_csv

import paretune
from paretune.tasks import task_options as make_task_options
from paretune.data.examples import Example
from paretune.tasks.base import IGNORE_INDEX
from paretune.tasks.ner import NerTask


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_config(model_dir: Path, folder: Path, task: dict, train: Path, validation: Path,
               **training) -> dict:
    """A short run on the tiny model; `training` overrides the few-step defaults."""
    return {
        "model": {"name_or_path": str(model_dir)},
        "task": task,
        "data": {"train": str(train), "validation": str(validation), "max_length": 32,
                 "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 4, "batch_size": 16, "lr": 1e-3, "seed": 7, "warmup_ratio": 0.0,
                     "save_every": 10_000, **training},
        "output": {"dir": str(folder / "run")},
    }


def saved_config(run) -> dict:
    return yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8"))


# --- classification -------------------------------------------------------------------------


def test_classification_learns_the_toy_task(tiny_model_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(160, seed=1))
    validation = write_csv(tmp_path / "validation.csv", sentiment_rows(40, seed=2))
    config = run_config(tiny_model_dir, tmp_path, {"type": "classification"}, train, validation,
                        max_steps=100)
    run = paretune.finetune(config)
    assert run.metrics["labels"] == ["negative", "positive"]
    assert run.metrics["steps"] == 100
    # Chance is 0.5 on the balanced validation set.
    assert run.validation["accuracy"] >= 0.8


# --- multilabel -----------------------------------------------------------------------------


def multilabel_rows(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """Sentiment texts tagged with their polarity and, when they mention one, 'music' or 'cast'."""
    rows = []
    for text, sentiment in sentiment_rows(n, seed):
        labels = [sentiment]
        labels += [topic for topic in ("music", "cast") if topic in text.split()]
        rows.append((text, labels))
    return rows


def write_multilabel(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    """CSV cells join the labels with the default delimiter; JSON lines hold them as lists."""
    if path.suffix == ".csv":
        return write_csv(path, [(text, ",".join(labels)) for text, labels in rows])
    lines = [json.dumps({"text": text, "label": labels}) + "\n" for text, labels in rows]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_multilabel_csv_cells_and_jsonl_lists_train_the_same(tiny_model_dir, tmp_path):
    data = {"train": multilabel_rows(48, seed=3), "validation": multilabel_rows(24, seed=4)}
    assert any(len(labels) > 1 for _, labels in data["train"])  # the data really is multi-label
    runs = {}
    for fmt in ("csv", "jsonl"):
        folder = tmp_path / fmt
        folder.mkdir()
        train, validation = (write_multilabel(folder / f"{name}.{fmt}", rows) for name, rows in data.items())
        config = run_config(tiny_model_dir, folder, {"type": "multilabel"}, train, validation)
        runs[fmt] = paretune.finetune(config)

    for run in runs.values():
        assert run.metrics["labels"] == ["cast", "music", "negative", "positive"]
        assert 0.0 <= run.validation["f1_micro"] <= 1.0
    # A "a,b" cell and a ["a", "b"] list are the same labels: same targets, same training, same loss.
    assert runs["csv"].validation["loss"] == pytest.approx(runs["jsonl"].validation["loss"], rel=1e-5)
    assert runs["csv"].validation["f1_micro"] == pytest.approx(runs["jsonl"].validation["f1_micro"])


# --- regression -----------------------------------------------------------------------------


def regression_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """A float score: the number of positive minus negative words, shifted off the integers."""
    rows = []
    for text, _ in sentiment_rows(n, seed):
        words = text.split()
        score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words) + 0.25
        rows.append((text, f"{score:.2f}"))
    return rows


def test_regression_reports_finite_mse_and_r2(tiny_model_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", regression_rows(48, seed=5))
    validation = write_csv(tmp_path / "validation.csv", regression_rows(24, seed=6))
    run = paretune.finetune(run_config(tiny_model_dir, tmp_path, {"type": "regression"}, train, validation))
    for name in ("mse", "r2"):
        assert math.isfinite(run.validation[name]), name
    assert run.validation["mse"] >= 0
    assert run.metrics["metric"] == "mse"


# --- NER ------------------------------------------------------------------------------------


def to_bioes(tags: list[str]) -> list[str]:
    """IOB2 tags rewritten as BIOES (single-word entities S-, last words E-)."""
    out = []
    for i, tag in enumerate(tags):
        continues = i + 1 < len(tags) and tags[i + 1] == "I-" + tag[2:]
        if tag.startswith("B-"):
            out.append(tag if continues else "S-" + tag[2:])
        elif tag.startswith("I-"):
            out.append(tag if continues else "E-" + tag[2:])
        else:
            out.append(tag)
    return out


@pytest.mark.parametrize("scheme", ["iob2", "bioes"])
def test_ner_on_conll_detects_and_saves_the_tag_scheme(tiny_model_dir, tmp_path, scheme):
    convert = to_bioes if scheme == "bioes" else list
    sentences = {split: [(words, convert(tags)) for words, tags in ner_sentences(n, seed)]
                 for split, n, seed in (("train", 48, 7), ("validation", 16, 8))}
    train = write_conll(tmp_path / "train.conll", sentences["train"])
    validation = write_conll(tmp_path / "validation.conll", sentences["validation"])

    run = paretune.finetune(run_config(tiny_model_dir, tmp_path, {"type": "ner"}, train, validation))

    assert saved_config(run)["task"]["tag_scheme"] == scheme  # "auto" was settled from the data
    for name in ("f1", "precision", "recall"):
        assert 0.0 <= run.validation[name] <= 1.0, name
    assert run.metrics["labels"][0] == "O"
    assert set(run.validation["per_type"]) <= {"PER", "LOC", "ORG"}


# --- NER sub-word alignment -----------------------------------------------------------------

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def encode_one(tokenizer, words: list[str], tags: list[str], **task_options):
    task = NerTask(make_task_options({"type": "ner", "tag_scheme": "iob2", **task_options}), TAGS)
    example = Example(text=words, label=tags, row=1)
    targets = task.parse([example], "test.conll", "tag")
    encoded = task.encode([example], targets, tokenizer, max_length=32)
    return task, encoded


@pytest.fixture(scope="module")
def split_words(tokenizer):
    """Words with the tokenizer's pieces: a one-piece word, a multi-piece one, then more."""
    words = ["john", "maryberlinparis", "was", "londongoogle"]
    pieces = [tokenizer.tokenize(word) for word in words]
    assert len(pieces[0]) == 1 and len(pieces[1]) > 1 and len(pieces[3]) > 1, pieces
    return words, pieces


def test_ner_first_subword_carries_the_tag(tokenizer, split_words):
    words, pieces = split_words
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    task, encoded = encode_one(tokenizer, words, tags)

    expected = [IGNORE_INDEX]  # [CLS]
    for word_pieces, tag in zip(pieces, tags):
        expected += [task.label_to_id[tag]] + [IGNORE_INDEX] * (len(word_pieces) - 1)
    expected.append(IGNORE_INDEX)  # [SEP]
    assert encoded.token_labels[0].tolist() == expected
    assert len(encoded.input_ids[0]) == len(expected)
    starts = np.cumsum([1] + [len(p) for p in pieces[:-1]])
    assert encoded.word_starts[0].tolist() == starts.tolist()


def test_ner_label_all_subwords_continues_with_the_inside_tag(tokenizer, split_words):
    words, pieces = split_words
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    continuation = {"B-PER": "I-PER", "I-PER": "I-PER", "O": "O", "B-LOC": "I-LOC"}
    task, encoded = encode_one(tokenizer, words, tags, label_all_subwords=True)

    expected = [IGNORE_INDEX]
    for word_pieces, tag in zip(pieces, tags):
        expected += [task.label_to_id[tag]] + [task.label_to_id[continuation[tag]]] * (len(word_pieces) - 1)
    expected.append(IGNORE_INDEX)
    assert encoded.token_labels[0].tolist() == expected

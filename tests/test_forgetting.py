"""data.general_eval: the base and the tuned model answer the same general instructions after a
generative run; the difference is in metrics.json and the model card (evaluation/general_eval.py)."""
from __future__ import annotations

import json
import re

import pytest
from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl

import paretune
from paretune.errors import ConfigError, DataError
from paretune.evaluation import general_eval
from paretune.tasks.generation import GenerationOptions, GenerationTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_shipped_set_is_fixed_and_its_answers_are_right():
    rows = general_eval.shipped_rows()
    assert rows == general_eval.shipped_rows() and len(rows) == 40
    assert len({r["prompt"] for r in rows}) == 40
    for row in rows:
        numbers = re.fullmatch(r"What is (\d+) (plus|times) (\d+)\? Answer with the number only\.", row["prompt"])
        if numbers:
            a, op, b = int(numbers[1]), numbers[2], int(numbers[3])
            assert row["completion"] == str(a + b if op == "plus" else a * b)
        backwards = re.fullmatch(r'Write the word "(\w+)" backwards\. Answer with that word only\.', row["prompt"])
        if backwards:
            assert row["completion"] == backwards[1][::-1]
    name, examples = general_eval.general_examples("shipped")
    assert name == "shipped" and examples[0].text[0]["role"] == "user" and examples[0].label == rows[0]["completion"]


def test_a_file_without_answers_is_refused_naming_it(tmp_path):
    path = write_jsonl(tmp_path / "general.jsonl", [{"text": "only a text to continue"}])
    with pytest.raises(DataError, match="general.jsonl.*no row has a reference answer"):
        general_eval.general_examples(str(path))


def test_a_task_that_does_not_generate_is_refused():
    from paretune.tasks.classification import ClassificationOptions, ClassificationTask

    with pytest.raises(ConfigError, match="data.general_eval scores generated answers; the classification task"):
        general_eval.read_general_set("shipped", ClassificationTask(ClassificationOptions(), ["a", "b"]))


def test_a_resumed_run_reads_the_base_scores_back(tmp_path, monkeypatch):
    recorded = {"set": "shipped", "rows": 40, "base": {"exact_match": 0.25, "contains": 0.5}}
    (tmp_path / general_eval.BASE_FILE).parent.mkdir()
    (tmp_path / general_eval.BASE_FILE).write_text(json.dumps(recorded))
    monkeypatch.setattr(general_eval, "score", lambda *a, **k: pytest.fail("the base was scored again"))
    task = GenerationTask(GenerationOptions(), [])
    started = general_eval.start_general_eval(general_eval.read_general_set("shipped", task), task, None, None,
                                              "cpu", tmp_path)
    assert started.base == recorded["base"] and len(started.examples) == 40


def test_answers_are_as_long_as_the_set_needs_not_the_tasks_answer_length():
    """A one-word task (max_new_tokens 2) still gives the general set's longest reference room."""
    from bpe_fixtures import byte_bpe_tokenizer

    class Recorder:
        config = GenerationOptions(max_new_tokens=2)

        def answer(self, model, tokenizer, examples, device, settings):
            self.settings = settings
            return [str(ex.label) for ex in examples]

    tokenizer = byte_bpe_tokenizer()
    _, examples = general_eval.general_examples("shipped")
    task = Recorder()
    assert general_eval.score(task, None, tokenizer, examples, "cpu")["exact_match"] == 1.0
    longest = max(len(tokenizer(str(ex.label), add_special_tokens=False)["input_ids"]) for ex in examples)
    assert longest > 2 and task.settings.max_new_tokens == longest + 4


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("tiny-llama"))


def _config(llama_dir, folder, general) -> dict:
    return {
        "model": {"name_or_path": str(llama_dir)},
        "task": {"type": "generation", "generate_rows": 0, "max_new_tokens": 3},
        "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(48, 1))),
                 "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(4, 2))),
                 "max_length": 48, "cache_dir": str(folder / "cache"), "general_eval": str(general)},
        "method": {"name": "lora", "r": 4},
        "training": {"max_steps": 12, "batch_size": 16, "lr": 2e-2, "seed": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "run")},
    }


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, llama_dir):
    folder = tmp_path_factory.mktemp("forgetting")
    general = write_jsonl(folder / "general.jsonl", instruction_rows(8, 7))  # answers the run learns
    return paretune.finetune(_config(llama_dir, folder, general)), folder


def test_a_bad_general_set_is_refused_before_the_run_folder_exists(llama_dir, tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: file not found"):
        paretune.finetune(_config(llama_dir, tmp_path, tmp_path / "missing.jsonl"))
    assert not (tmp_path / "run").exists()  # nothing blocks the corrected rerun


def test_base_and_tuned_scores_are_those_of_the_two_models(lora_run, llama_dir):
    """The base score is the untouched base model's (the LoRA adapter disabled), the tuned one the
    saved model's, each scored here again on its own; the change is their difference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, folder = lora_run
    forgetting = run.metrics["forgetting"]
    assert forgetting["set"].endswith("general.jsonl") and forgetting["rows"] == 8
    task = GenerationTask(GenerationOptions(max_new_tokens=3), [])
    _, examples = general_eval.general_examples(str(folder / "general.jsonl"))
    for name, model_dir in [("base", llama_dir), ("tuned", run.path / "model")]:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
        scores = general_eval.score(task, model, AutoTokenizer.from_pretrained(model_dir), examples, "cpu")
        assert scores == pytest.approx(forgetting[name]), name
    assert forgetting["tuned"]["exact_match"] > forgetting["base"]["exact_match"]  # the run learnt these answers
    change = {k: forgetting["tuned"][k] - forgetting["base"][k] for k in forgetting["change"]}
    assert forgetting["change"] == pytest.approx(change)
    assert json.loads((run.path / "metrics.json").read_text())["forgetting"] == forgetting
    card = (run.path / "README.md").read_text()
    assert f"general instructions ({forgetting['set']}, 8 rows), base -> tuned: exact_match" in card
    assert "general_eval_s" in run.cost["phases_s"]

"""training.eval_generate: every evaluation of a generative run also scores greedy answers, and
training.metric may name one of those scores (tiny random Llama, engine/eval_generate.py)."""
from __future__ import annotations

import json

import pytest
from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl

import paretune
from paretune.errors import ConfigError
from paretune.tasks.generation import GenerationTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("tiny-llama"))


def _config(model_dir, folder, training=None):
    return {
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "generation", "generate_rows": 6, "max_new_tokens": 3, "match": r"regex:(\w+)"},
        "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(32, 1))),
                 "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(6, 2))),
                 "max_length": 48, "cache_dir": str(folder / "cache")},
        "method": {"name": "full"},
        "training": {"max_steps": 6, "eval_every": 2, "save_every": 100, "batch_size": 16, "lr": 3e-3,
                     "seed": 1, "warmup_ratio": 0.0, "eval_generate": 6, **(training or {})},
        "output": {"dir": str(folder / "run")},
    }


def _evaluations(run_path) -> list[dict]:
    lines = (run_path / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "validation" in r]


def test_each_evaluation_records_the_generated_answer_metrics(llama_dir, tmp_path):
    run = paretune.finetune(_config(llama_dir, tmp_path))
    evaluations = _evaluations(run.path)
    assert [r["step"] for r in evaluations] == [2, 4, 6]
    for record in evaluations:
        scores = record["validation"]
        assert {"perplexity", "exact_match", "structured_match", "rouge_l"} <= set(scores)
        assert scores["generated_rows"] == 6 and 0 <= scores["exact_match"] <= 1
    # The last evaluation scored the final weights on the same rows the score after training answers.
    assert run.validation["exact_match"] == evaluations[-1]["validation"]["exact_match"]


def _script_exact_match(monkeypatch, scores: list[float]) -> None:
    """Each evaluation's exact match is the next of `scores` (then the real one); the rest is real."""
    scripted = iter(scores)
    real = GenerationTask.answer_metrics

    def answer_metrics(self, model, tokenizer, examples, device):
        metrics = real(self, model, tokenizer, examples, device)
        return {**metrics, "exact_match": next(scripted, metrics["exact_match"])}

    monkeypatch.setattr(GenerationTask, "answer_metrics", answer_metrics)


def test_the_best_checkpoint_follows_exact_match_not_perplexity(llama_dir, tmp_path, monkeypatch):
    """Scripted scores: exact match peaks at the second evaluation while perplexity keeps falling,
    so the best step (and the weights kept) is the second evaluation's."""
    _script_exact_match(monkeypatch, [0.25, 0.75, 0.5])
    run = paretune.finetune(_config(llama_dir, tmp_path, {"metric": "exact_match",
                                                          "early_stopping": {"patience": 5}}))
    evaluations = _evaluations(run.path)
    assert [r["best"] for r in evaluations] == [True, True, False]
    assert run.metrics["metric"] == "exact_match" and run.metrics["best_step"] == 4
    perplexities = [r["validation"]["perplexity"] for r in evaluations]
    assert perplexities[2] < perplexities[1]  # by perplexity the last step would have been kept


def test_early_stopping_follows_exact_match_while_perplexity_still_falls(llama_dir, tmp_path, monkeypatch):
    """Scripted: exact match drops after the first evaluation, so patience 1 stops the run there."""
    _script_exact_match(monkeypatch, [0.75, 0.5])
    run = paretune.finetune(_config(llama_dir, tmp_path, {"metric": "exact_match",
                                                          "early_stopping": {"patience": 1}}))
    evaluations = _evaluations(run.path)
    assert [r["step"] for r in evaluations] == [2, 4]  # step 6 never ran
    assert run.metrics["stopped_early"] and run.metrics["best_step"] == 2
    assert evaluations[1]["validation"]["perplexity"] < evaluations[0]["validation"]["perplexity"]


def test_a_generated_metric_without_eval_generate_is_refused_before_training(llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="need training.eval_generate"):
        paretune.finetune(_config(llama_dir, tmp_path, {"metric": "exact_match", "eval_generate": 0}))
    assert not (tmp_path / "run").exists()

"""`paretune pairs`: preference pairs from a run's own wrong answers, resumable, readable by a
preference run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import paretune
from conftest import sentiment_rows
from generation_fixtures import tiny_llama_dir
from paretune.cli import pairs as pairs_cli
from paretune.data.preference_rows import read_preference_examples


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pairs")
    tiny_llama_dir(root / "llama")
    rows = "".join(json.dumps({"prompt": text, "completion": label}) + "\n" for text, label in sentiment_rows(40, 4))
    (root / "prompts.jsonl").write_text(rows)
    run = paretune.finetune({
        "model": {"name_or_path": str(root / "llama")},
        "task": {"type": "generation", "generate_rows": 0, "max_new_tokens": 3},
        "data": {"train": str(root / "prompts.jsonl"), "validation_split": 0.2, "max_length": 48,
                 "cache_dir": str(root / "cache")},
        "method": {"name": "full"},
        "training": {"max_steps": 1, "batch_size": 8, "lr": 1e-3},
        "output": {"dir": str(root / "sft")},
    })
    return run.path, root / "prompts.jsonl"


def _pairs(run: Path, data: Path, output: Path, *flags: str):
    app = typer.Typer()
    pairs_cli.register(app)
    return CliRunner().invoke(app, [str(run), "--data", str(data), "--output", str(output), *flags])


def test_pairs_from_sampled_answers_are_preference_rows(sft_run, tmp_path):
    run, data = sft_run
    result = _pairs(run, data, tmp_path / "pairs.jsonl", "--samples", "2", "--temperature", "1.0")
    assert result.exit_code == 0, result.output
    samples = [json.loads(line) for line in (tmp_path / "pairs.jsonl.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 40 and all(len(s["samples"]) == len(s["right"]) == 2 for s in samples)
    examples = read_preference_examples(tmp_path / "pairs.jsonl")
    assert f"{len(examples)} pairs written" in result.output
    assert examples and all(ex.label["chosen"] != ex.label["rejected"] for ex in examples)


def test_right_prompts_are_skipped_and_an_interrupted_job_continues(sft_run, tmp_path, monkeypatch):
    import paretune.generate_text as generate_text

    run, data = sft_run
    references = {text: label for text, label in sentiment_rows(40, 4)}
    calls = []

    def answers(predictor, examples, settings):  # right on even rows, wrong on odd ones
        calls.append([ex.row for ex in examples])
        if len(calls) == 3:  # the second chunk's first sample: as if the job were killed here
            raise KeyboardInterrupt
        return [references[ex.text[0]["content"]] if ex.row % 2 == 0 else "neutral" for ex in examples]
    monkeypatch.setattr(generate_text, "answer", answers)
    output = tmp_path / "pairs.jsonl"
    stopped = _pairs(run, data, output, "--samples", "2")
    assert stopped.exit_code != 0 and not output.exists()

    calls.clear()
    monkeypatch.setattr(generate_text, "answer", lambda p, examples, s: calls.append(1) or [
        references[ex.text[0]["content"]] if ex.row % 2 == 0 else "neutral" for ex in examples])
    done = _pairs(run, data, output, "--samples", "2")
    assert done.exit_code == 0, done.output
    assert len(calls) == 2  # only the second chunk (rows 33-40), twice: the first 32 were kept
    assert "40 prompts: 20 pairs written" in done.output and "20 always answered right" in done.output
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(1, 41, 2))
    assert all(r["rejected"] == "neutral" and r["chosen"] in ("positive", "negative") for r in rows)


def test_a_bad_metric_is_refused_before_the_model_loads(sft_run, tmp_path):
    run, data = sft_run
    result = _pairs(run, data, tmp_path / "pairs.jsonl", "--metric", "fuzzy")
    assert result.exit_code != 0 and "--metric" in str(result.exception)


def test_chosen_sample_takes_the_runs_own_right_answer(sft_run, tmp_path, monkeypatch):
    import paretune.generate_text as generate_text

    run, data = sft_run
    references = {text: label for text, label in sentiment_rows(40, 4)}
    # The first sample is right in other words (exact match ignores case and spaces), the second wrong.
    monkeypatch.setattr(generate_text, "answer", lambda p, examples, settings: [
        f" {references[ex.text[0]['content']].upper()}" if settings.seed == 0 else "neutral" for ex in examples])
    done = _pairs(run, data, tmp_path / "pairs.jsonl", "--samples", "2", "--chosen", "sample")
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(r["chosen"] in (" POSITIVE", " NEGATIVE") and r["rejected"] == "neutral"
                                   for r in rows)

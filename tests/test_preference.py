"""Preference runs train through the one loop like any run: DPO under LoRA, KTO under full
fine-tuning, reference log-probs scored once and kept in the run folder and the shared cache (a
repeated run scores one probe batch), and a run stopped mid-training resumes to the weights of an
uninterrupted one without scoring the reference again."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

import paretune
from conftest import sentiment_rows
from generation_fixtures import tiny_llama_dir
from paretune.tasks.preference import REFERENCE_FILE, PreferenceTask


def _pairs(n: int, seed: int) -> str:
    other = {"positive": "negative", "negative": "positive"}
    return "".join(json.dumps({"prompt": text, "chosen": label, "rejected": other[label]}) + "\n"
                   for text, label in sentiment_rows(n, seed))


def _answers(n: int, seed: int) -> str:
    other = {"positive": "negative", "negative": "positive"}
    return "".join(json.dumps({"prompt": text, "completion": label if i % 3 else other[label], "label": bool(i % 3)})
                   + "\n" for i, (text, label) in enumerate(sentiment_rows(n, seed)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("preference")
    tiny_llama_dir(root / "llama")
    (root / "train.jsonl").write_text(_pairs(32, 1))
    (root / "validation.jsonl").write_text(_pairs(8, 2))
    (root / "kto_train.jsonl").write_text(_answers(24, 1))
    (root / "kto_validation.jsonl").write_text(_answers(6, 2))
    return root


def _config(root: Path, out: str, loss: dict, method: str = "lora", files: str = "", **training) -> dict:
    return {
        "model": {"name_or_path": str(root / "llama")},
        "task": {"type": "preference", "loss": loss, "generate_rows": 4, "max_new_tokens": 2},
        "data": {"train": str(root / f"{files}train.jsonl"), "validation": str(root / f"{files}validation.jsonl"),
                 "max_length": 48, "cache_dir": str(root / "cache")},
        "method": {"name": method},
        "training": {"max_steps": 4, "batch_size": 8, "lr": 1e-3, "seed": 5, "eval_every": 2, "save_every": 2,
                     "load_best": False, "warmup_ratio": 0.0, **training},
        "output": {"dir": str(root / out)},
    }


def test_dpo_under_lora_is_an_ordinary_run(folder):
    run = paretune.finetune(_config(folder, "dpo", {"name": "dpo", "beta": 0.1}, eval_generate=2))
    assert run.metrics["steps"] == 4 and run.metrics["metric"] == "loss"
    validation = run.validation
    assert set(PreferenceTask.metric_names) <= set(validation)
    assert validation["rewards/margins"] == pytest.approx(validation["rewards/chosen"] - validation["rewards/rejected"])
    assert "exact_match" in validation  # greedy answers to the validation prompts, against the chosen ones
    samples = [json.loads(line) for line in (run.path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and all(s["reference"] in ("positive", "negative") for s in samples)
    assert (run.path / REFERENCE_FILE).is_file()
    assert run.cost["phases_s"]["reference_s"] > 0  # the reference pass is its own phase of the run's time
    assert (run.path / "model" / "model.safetensors").is_file()  # merged, loadable like any generative run
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2, 4]
    assert all({"rewards/accuracies", "exact_match"} <= set(h["validation"]) for h in history)  # eval_generate


def test_kto_under_full_fine_tuning_trains(folder):
    run = paretune.finetune(_config(folder, "kto", {"name": "kto"}, method="full", files="kto_", max_steps=2))
    assert run.metrics["steps"] == 2
    assert run.validation["rewards/chosen"] is not None and run.validation["rewards/rejected"] is not None


def test_a_stopped_run_resumes_to_the_same_weights_without_scoring_the_reference_again(folder, monkeypatch):
    import paretune.engine.loop as loop
    import paretune.tasks.preference as preference

    straight = paretune.finetune(_config(folder, "straight", {"name": "dpo"}))

    def stop_at(point, step=None):
        if point == "step" and step == 3:
            raise KeyboardInterrupt  # after step 2's checkpoint: what a kill leaves behind
    probes, score = [], preference._score_set
    monkeypatch.setattr(preference, "_score_set", lambda task, model, encoded, *rest: probes.append(len(encoded))
                        or score(task, model, encoded, *rest))
    monkeypatch.setattr(loop, "fault_point", stop_at)
    with pytest.raises(KeyboardInterrupt):
        paretune.finetune(_config(folder, "stopped", {"name": "dpo"}))
    monkeypatch.undo()
    assert probes == [4]  # a repeated run scores one probe batch; the rest is read from the shared cache
    assert not (folder / "stopped" / "metrics.json").exists()
    assert [p.name for p in (folder / "stopped" / "checkpoints").glob("step-*")] == ["step-00000002"]

    scored = []
    monkeypatch.setattr(preference, "_score_set", lambda *args: scored.append(args))
    resumed = paretune.resume(folder / "stopped")
    assert scored == []  # read back from the run folder
    a = load_file(str(straight.path / "model" / "model.safetensors"))
    b = load_file(str(resumed.path / "model" / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    assert resumed.validation["loss"] == pytest.approx(straight.validation["loss"], abs=1e-6)


def test_dpo_from_an_sft_run_starts_from_its_model_and_carries_the_lineage_cost(folder):
    sft_rows = "".join(json.dumps({"prompt": text, "completion": label}) + "\n" for text, label in sentiment_rows(16, 3))
    (folder / "sft.jsonl").write_text(sft_rows)
    sft_config = _config(folder, "sft", {"name": "dpo"}, max_steps=2)
    sft_config["task"] = {"type": "generation", "generate_rows": 0}
    sft_config["data"] = {"train": str(folder / "sft.jsonl"), "validation_split": 0.25, "max_length": 48,
                          "cache_dir": str(folder / "cache")}
    sft = paretune.finetune(sft_config)

    config = _config(folder, "dpo-after-sft", {"name": "dpo"}, max_steps=2)
    config["model"] = {"name_or_path": str(sft.path)}  # the run folder itself
    run = paretune.finetune(config)
    assert run.config.model.name_or_path == str(sft.path / "model")
    cost = json.loads((run.path / "cost.json").read_text())
    parent = json.loads((sft.path / "cost.json").read_text())
    assert cost["parent"]["run"] == str(sft.path.resolve())
    assert cost["wall_s"] == pytest.approx(cost["step"]["wall_s"] + parent["wall_s"], rel=1e-4)
    assert cost["device_hours"] == pytest.approx(cost["step"]["device_hours"] + parent["device_hours"], rel=1e-3)


def test_preference_tuning_defaults_to_lora_and_other_tasks_to_full(folder):
    """The issue's "LoRA by default": a preference config with no method section gets LoRA (its
    reference is then the base with the adapter off); a given method and other tasks are untouched."""
    from paretune.config.schema import Config

    data = {"train": str(folder / "train.jsonl")}
    assert Config.model_validate({"task": {"type": "preference"}, "data": data}).method.name == "lora"
    chosen = {"task": {"type": "preference"}, "data": data, "method": {"name": "full"}}
    assert Config.model_validate(chosen).method.name == "full"
    assert Config.model_validate({"task": {"type": "generation"}, "data": data}).method.name == "full"
    assert Config.model_validate({"data": data}).method.name == "full"

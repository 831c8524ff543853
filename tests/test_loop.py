"""Loop behaviour: early stopping, non-finite losses, accumulation, best-model selection."""
from __future__ import annotations

import json

import pytest

import paretune
from paretune.errors import TrainingError


def _with(cfg, **training):
    return {**cfg, "training": {**cfg["training"], **training}}


def test_early_stopping_stops_when_the_metric_stalls(tiny_config):
    # A learning rate this small cannot move accuracy: the second evaluation is no better.
    run = paretune.finetune(_with(tiny_config, lr=1e-12, eval_every=2, early_stopping={"patience": 1},
                                  metric="accuracy"))
    assert run.metrics["stopped_early"] is True
    assert run.metrics["steps"] == 4 and run.metrics["best_step"] == 2


def test_repeated_nonfinite_loss_stops_with_clear_error_and_keeps_the_log(tiny_config, tmp_path):
    cfg = _with(tiny_config, optimizer="sgd", lr=1e12, max_grad_norm=None, max_nan_steps=3,
                eval_every=1, warmup_ratio=0.0)
    with pytest.raises(TrainingError, match="NaN/inf for 3 steps in a row"):
        paretune.finetune(cfg)
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert (tmp_path / "run" / "metrics.jsonl").read_text().strip()  # evaluations so far are kept


def test_deferred_check_skips_bad_steps_on_the_device_and_still_stops_a_streak(tiny_config, tmp_path):
    # The GPU path (engine/finite.py), forced on the CPU: no host read per step, same outcome.
    cfg = _with(tiny_config, lr=1e12, max_grad_norm=None, max_nan_steps=3, eval_every=1, warmup_ratio=0.0,
                finite_check="deferred", log_every=2)
    with pytest.raises(TrainingError, match="NaN/inf for 3 steps in a row"):
        paretune.finetune(cfg)


def test_deferred_check_trains_exactly_like_the_host_check(tiny_config, tmp_path):
    runs = [paretune.finetune(_with(tiny_config, finite_check=mode, epochs=2),
                              [f"output.dir={tmp_path / mode}"]) for mode in ("step", "deferred")]
    assert runs[0].validation["loss"] == pytest.approx(runs[1].validation["loss"], abs=1e-6)
    assert runs[1].metrics["nan_steps"] == 0


def test_gradient_accumulation_and_token_budget_train(tiny_config):
    run = paretune.finetune(_with(tiny_config, batch_size=None, batch_tokens=128, gradient_accumulation_steps=2,
                                  scheduler="cosine", epochs=20))
    assert run.validation["accuracy"] >= 0.9
    assert run.cost["padding_fraction"] < 0.2


def test_best_checkpoint_is_the_saved_model(tiny_config):
    run = paretune.finetune(_with(tiny_config, eval_every=5, metric="loss"))
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    best = min(history, key=lambda r: r["validation"]["loss"])
    assert run.metrics["best_step"] == best["step"]
    assert run.validation["loss"] == pytest.approx(best["validation"]["loss"], abs=1e-5)


def test_final_validation_reuses_the_last_evaluation_only_when_it_scored_the_final_weights(tiny_config, monkeypatch):
    import paretune.runner as runner

    calls = []
    real = runner.evaluate
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    # Training ends on an evaluation of its last weights: the final figures are that evaluation's.
    run = paretune.finetune(_with(tiny_config, epochs=1))
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert calls == [] and run.validation == history[-1]["validation"]
    # A rate this small cannot move accuracy, so the first evaluation stays the best: the model ends
    # on step 2's weights, which the last evaluation (step 10) did not score, so they are scored again.
    cfg = _with(tiny_config, lr=1e-12, eval_every=2, epochs=1, metric="accuracy")
    run = paretune.finetune({**cfg, "output": {"dir": str(run.path) + "-again"}})
    assert run.metrics["best_step"] == 2 and run.metrics["steps"] == 10
    assert calls == [1]

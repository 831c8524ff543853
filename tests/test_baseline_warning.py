"""The end-of-training warning for a classifier no better than always answering the commonest label."""
from __future__ import annotations

import logging

import paretune
from paretune.evaluation.baseline import majority_baseline, no_better_than_baseline

LABELS = ["negative", "positive"]


def metrics(accuracy: float, matrix: list[list[int]]) -> dict:
    return {"accuracy": accuracy, "confusion_matrix": matrix}


def test_baseline_is_the_commonest_true_label():
    # rows are true labels: 45 negative, 55 positive
    assert majority_baseline(metrics(0.5, [[20, 25], [25, 30]])) == (1, 0.55, 100)


def test_run_at_chance_is_warned_with_what_to_try():
    # the README's old example: 0.547 on 300 balanced validation rows
    warning = no_better_than_baseline(metrics(0.547, [[80, 70], [66, 84]]), LABELS, lr=3e-5)
    assert warning is not None
    assert "0.547 is no better than always predicting 'negative' (0.500, within the noise of 300 rows)" in warning
    assert "training.lr (this run: 3e-05)" in warning and "training.epochs" in warning


def test_the_margin_is_two_standard_errors_of_the_baseline():
    # 300 balanced rows: 0.5 + 2 * sqrt(0.25 / 300) = 0.5577
    assert no_better_than_baseline(metrics(0.557, [[150, 0], [133, 17]]), LABELS) is not None
    assert no_better_than_baseline(metrics(0.560, [[150, 0], [132, 18]]), LABELS) is None
    # 10,000 rows: the margin is one point
    assert no_better_than_baseline(metrics(0.515, [[5000, 0], [4850, 150]]), LABELS) is None


def test_a_run_that_learned_is_not_warned():
    assert no_better_than_baseline(metrics(0.9, [[40, 5], [5, 50]]), LABELS) is None


def test_metrics_without_a_confusion_matrix_are_not_judged():
    assert no_better_than_baseline({"accuracy": 0.1}, LABELS) is None  # e.g. multilabel
    assert no_better_than_baseline({"rmse": 3.0}, []) is None  # regression


def test_training_that_barely_starts_logs_the_warning(tiny_config, caplog):
    tiny_config["training"].update({"max_steps": 1, "lr": 1e-7, "epochs": 1})
    with caplog.at_level(logging.WARNING, logger="paretune"):
        paretune.finetune(tiny_config)
    assert any("is no better than always predicting" in r.getMessage() for r in caplog.records)

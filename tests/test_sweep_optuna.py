"""Optuna search in a sweep: trials are variants, the SQLite study resumes and is never overfilled."""
from __future__ import annotations

import pytest
import yaml

from paretune.sweep import load_sweep, run_sweep
from paretune.sweep.optuna_search import Search
from paretune.sweep.orchestrate import main_metric
from paretune.sweep.state import SweepState

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def search_file(tiny_config, tmp_path):
    base = {k: v for k, v in tiny_config.items() if k != "output"}
    base["training"] = {**base["training"], "max_steps": 2}
    spec = {
        "base": base,  # inline base config
        "dir": str(tmp_path / "out"),
        "search": {
            "n_trials": 2, "sampler": "random", "seed": 3,
            "space": {
                "method.name": ["full", "lora"],
                "method.r": {"type": "int", "low": 2, "high": 8, "when": {"method.name": "lora"}},
                "training.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            },
        },
    }
    path = tmp_path / "search.yaml"

    def write(n_trials: int):
        spec["search"]["n_trials"] = n_trials
        path.write_text(yaml.safe_dump(spec))
        return path

    return write


def study(folder):
    # The study is named after the sweep folder (no `name:` or `search.study_name` given).
    return optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'optuna.db'}")


def test_search_runs_trials_and_a_rerun_continues_the_study(search_file, tmp_path):
    out = tmp_path / "out"
    result = run_sweep(load_sweep(search_file(2)))
    assert result.names == ["trial-0000", "trial-0001"] and result.count("finished") == 2
    trials = study(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        record = result.records[f"trial-{trial.number:04d}"]
        assert trial.value == record["value"] and record["overrides"] == trial.params
        assert ("method.r" in trial.params) == (trial.params["method.name"] == "lora")  # `when`
    assert result.best_trial["value"] == max(t.value for t in trials)
    stamps = [(out / "runs" / n / "metrics.json").stat().st_mtime_ns for n in result.names]

    again = run_sweep(load_sweep(search_file(3)))  # one more trial: only that one runs
    assert again.names == ["trial-0000", "trial-0001", "trial-0002"] and again.count("finished") == 3
    assert [(out / "runs" / n / "metrics.json").stat().st_mtime_ns for n in result.names] == stamps
    assert len(study(out).trials) == 3
    assert len(run_sweep(load_sweep(search_file(3))).names) == 3  # full: nothing more runs


def test_trial_left_running_by_a_dead_worker_is_finished_not_repeated(search_file, tmp_path):
    sweep = load_sweep(search_file(1))
    # A worker asks for a trial and dies before running it: the trial stays RUNNING in the study.
    worker = SweepState.start(sweep)
    claims, _ = Search(sweep, worker, main_metric(sweep, None)[1]).ask(1)
    assert [c.variant.name for c in claims] == ["trial-0000"]
    assert [t.state.name for t in study(tmp_path / "out").trials] == ["RUNNING"]

    result = run_sweep(sweep)  # a new session: the dead claim is stale, the trial runs now
    trials = study(tmp_path / "out").trials
    assert [t.state.name for t in trials] == ["COMPLETE"]  # n_trials=1 respected: no second trial
    assert result.records["trial-0000"]["status"] == "finished"
    assert trials[0].params == result.records["trial-0000"]["overrides"]

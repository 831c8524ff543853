"""Run folders: what overwrite may replace and when, slimming after success, damaged or read-only
folders, and resuming exactly (train-loss accumulator, runs killed before their first checkpoint).
Kills at random moments are tests/test_fault_injection.py's."""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from test_bad_input import run_in_process
from test_fault_injection import cli_in_fork


@pytest.fixture()
def short(tiny_config):
    """A 6-step run: evaluations at steps 3 and 6, checkpoints at 2 and 4."""
    return {**tiny_config, "training": {**tiny_config["training"], "max_steps": 6, "save_every": 2,
                                        "eval_every": 3}}


def _config(sections: dict, **output):
    from paretune.config import config_from_dict

    return config_from_dict({**sections, "output": {**sections.get("output", {}), **output}})


def _run_like(folder: Path) -> Path:
    """A folder that looks like a paretune run (the markers RunFolder.create writes first)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("model: {}\n")
    (folder / "environment.json").write_text("{}\n")
    return folder


# --- 1. overwrite never deletes an ordinary folder ------------------------------------------
def test_overwrite_refuses_a_folder_that_is_not_a_run(tiny_config, tmp_path):
    from paretune.errors import ParetuneError
    from paretune.run_folder import RunFolder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a year of notes")
    with pytest.raises(ParetuneError, match=r"would delete .*mine.*not a paretune run folder"):
        RunFolder.create(_config(tiny_config, dir=str(mine), overwrite=True))
    assert (mine / "notes.txt").read_text() == "a year of notes"


def test_overwrite_refuses_the_folder_holding_the_data(tiny_config, tmp_path):
    from paretune.errors import ParetuneError
    from paretune.run_folder import RunFolder

    _run_like(tmp_path)  # even one that looks like a run: the training data lives in it
    with pytest.raises(ParetuneError, match="holds this run's data file"):
        RunFolder.create(_config(tiny_config, dir=str(tmp_path), overwrite=True))
    assert (tmp_path / "train.csv").is_file()


def test_overwrite_refuses_the_working_directory_and_its_parents(tiny_config, tmp_path, monkeypatch):
    from paretune.errors import ParetuneError
    from paretune.run_folder import RunFolder

    work = _run_like(tmp_path / "project")
    _run_like(work / "sub")  # e.g. `paretune train` run inside a run folder, with output.dir=.
    monkeypatch.chdir(work / "sub")
    for target in (".", "..", str(work)):
        with pytest.raises(ParetuneError, match="working directory"):
            RunFolder.create(_config(tiny_config, dir=target, overwrite=True))
    assert (work / "config.yaml").is_file() and (work / "sub").is_dir()


def test_overwrite_refuses_a_run_holding_files_paretune_did_not_write(tiny_config, tmp_path):
    from paretune.errors import ParetuneError
    from paretune.run_folder import RunFolder

    run = _run_like(tmp_path / "run")
    (run / "preds.jsonl").write_text("{}\n")
    with pytest.raises(ParetuneError, match=r"did not write \(preds.jsonl\)"):
        RunFolder.create(_config(tiny_config, dir=str(run), overwrite=True))
    assert (run / "preds.jsonl").is_file()


# --- 2. overwrite replaces a run only once the new one has finished -------------------------
def _fingerprint(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_overwrite_with_a_bad_metric_fails_before_touching_the_old_run(short, tmp_path):
    import paretune
    from paretune.errors import ConfigError

    old = paretune.finetune(short).path
    before = _fingerprint(old)
    with pytest.raises(ConfigError, match="training.metric: 'bogus'.*accuracy"):
        paretune.finetune(short, ["output.overwrite=true", "training.metric=bogus"])
    assert _fingerprint(old) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run"]


def test_failed_overwrite_leaves_the_old_run_and_removes_its_staging(short, tmp_path, monkeypatch):
    import paretune
    import paretune.runner

    old = paretune.finetune(short).path
    before = _fingerprint(old)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paretune.runner, "_save_model", disk_full)
    with pytest.raises(OSError, match="No space"):
        paretune.finetune(short, ["output.overwrite=true", "training.max_steps=4"])
    assert _fingerprint(old) == before
    assert not (tmp_path / "run.staging").exists()


def test_overwrite_replaces_a_finished_run_when_the_new_one_finishes(short, tmp_path):
    import paretune

    paretune.finetune(short)
    new = paretune.finetune(short, ["output.overwrite=true", "training.max_steps=4"])
    assert new.path == tmp_path / "run" and json.loads((new.path / "metrics.json").read_text())["steps"] == 4
    assert not (tmp_path / "run.staging").exists() and not (tmp_path / "run.replaced").exists()


def test_killed_overwrite_keeps_the_old_run_and_resumes_into_its_place(short, tmp_path, one_torch_thread):
    import paretune
    import yaml

    old = paretune.finetune(short).path
    before = _fingerprint(old)
    config = tmp_path / "new.yaml"
    config.write_text(yaml.safe_dump({**short, "training": {**short["training"], "max_steps": 4},
                                      "output": {"dir": str(old), "overwrite": True}}))
    assert cli_in_fork(["train", str(config)], "final-model") == -signal.SIGKILL
    assert _fingerprint(old) == before  # the new run died: the old one is whole
    staging = tmp_path / "run.staging"
    assert (staging / "model").is_dir() and not (staging / "metrics.json").exists()

    resumed = paretune.resume(staging)
    assert resumed.path == old and json.loads((old / "metrics.json").read_text())["steps"] == 4
    assert not staging.exists() and not (tmp_path / "run.replaced").exists()


def test_killed_between_the_renames_is_completed_by_resume(short, tmp_path, one_torch_thread):
    import paretune
    import yaml

    old = paretune.finetune(short).path
    config = tmp_path / "new.yaml"
    config.write_text(yaml.safe_dump({**short, "training": {**short["training"], "max_steps": 4},
                                      "output": {"dir": str(old), "overwrite": True}}))
    assert cli_in_fork(["train", str(config)], "swap") == -signal.SIGKILL
    assert not old.exists() and (tmp_path / "run.replaced" / "metrics.json").is_file()
    paretune.resume(tmp_path / "run.staging")  # finished: only the swap is left to do
    assert json.loads((old / "metrics.json").read_text())["steps"] == 4


# --- 3. slim run folders --------------------------------------------------------------------
def test_finished_run_keeps_only_what_a_user_needs(short):
    import paretune
    from paretune.errors import ParetuneError

    run = paretune.finetune(short)
    assert sorted(p.name for p in run.path.iterdir()) == sorted(
        ["config.yaml", "environment.json", "data.json", "metrics.jsonl", "metrics.json", "cost.json",
         "README.md", "model"])
    size = sum(p.stat().st_size for p in run.path.rglob("*") if p.is_file())
    assert run.metrics["run_folder_bytes"] == run.cost["run_folder_bytes"]
    assert abs(run.metrics["run_folder_bytes"] - size) < 4096  # the JSON files grew by the number
    assert json.loads((run.path / "metrics.json").read_text())["run_folder_bytes"] == run.metrics["run_folder_bytes"]
    with pytest.raises(ParetuneError, match="already finished.*keep_checkpoints_after_run"):
        paretune.resume(run.path)


def test_keep_checkpoints_after_run_keeps_them(short):
    import paretune

    run = paretune.finetune(short, ["output.keep_checkpoints_after_run=true"])
    assert (run.path / "checkpoints" / "best.safetensors").is_file()
    assert [p.name for p in (run.path / "checkpoints").glob("step-*")] == ["step-00000004"]


def test_train_prints_the_folder_size(short, tmp_path):
    import yaml

    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(short))
    outcome = run_in_process(["train", str(config)])
    assert outcome.exit_code in (0, None), outcome.stderr[-3000:]
    assert f"run folder: {tmp_path / 'run'} (" in outcome.stdout and "KiB)" in outcome.stdout


# --- 4. a torn last line in metrics.jsonl ---------------------------------------------------
def test_torn_last_metrics_line_is_dropped_and_a_bad_middle_line_named(tmp_path):
    from paretune.errors import ParetuneError
    from paretune.run_folder import RunFolder

    run = RunFolder(tmp_path)
    good = [json.dumps({"step": s}) for s in (2, 4)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(good) + '\n{"step": 6, "valid')
    assert [r["step"] for r in run.metrics_history()] == [2, 4]
    run.truncate_metrics(after_step=4)
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(line + "\n" for line in good)

    (tmp_path / "metrics.jsonl").write_text(good[0] + "\n{oops\n" + good[1] + "\n")
    with pytest.raises(ParetuneError, match=r"metrics.jsonl, line 2: not valid JSON"):
        run.metrics_history()


# --- 5. a read-only run folder --------------------------------------------------------------
def _make_read_only(folder: Path, monkeypatch) -> None:
    """chmod; as root (which writes anyway) the folder's writes are refused as a read-only disk."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    import errno

    import paretune.run_folder as run_folder

    real_open = os.open

    def refuse_inside(path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(run_folder.os, "open", refuse_inside)


def test_read_only_run_folder_is_a_named_error(short, tmp_path, monkeypatch):
    import paretune
    from paretune.errors import ParetuneError
    from paretune.run_folder import RunFolder

    started = RunFolder.create(_config(short, dir=str(tmp_path / "killed")))  # as a killed run leaves it
    locked = tmp_path / "locked"
    locked.mkdir()
    _make_read_only(locked, monkeypatch)
    _make_read_only(started.path, monkeypatch)
    try:
        with pytest.raises(ParetuneError, match=r"cannot write the run folder .*locked.*chmod"):
            paretune.finetune(short, [f"output.dir={locked / 'run'}"])
        with pytest.raises(ParetuneError, match=r"cannot write the run folder .*killed"):
            paretune.resume(started.path)
    finally:
        locked.chmod(0o755)
        started.path.chmod(0o755)


# --- 6 and 7. resuming exactly ---------------------------------------------------------------
@pytest.fixture()
def straight(tiny_config, tmp_path):
    """20 steps, evaluations every 5 and checkpoints every 7 (so one falls between evaluations),
    all checkpoints kept; `crash(step)` makes what a kill after that step's checkpoint leaves."""
    import paretune

    config = {**tiny_config, "training": {**tiny_config["training"], "max_steps": 20, "eval_every": 5,
                                          "save_every": 7, "keep_checkpoints": 5}}
    run = paretune.finetune(config, ["output.keep_checkpoints_after_run=true"]).path

    def crash(checkpoint_step: int | None) -> Path:
        crashed = tmp_path / f"crashed-{checkpoint_step}"
        shutil.copytree(run, crashed)
        for name in ("metrics.json", "cost.json", "README.md", "model"):
            target = crashed / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        for checkpoint in (crashed / "checkpoints").glob("step-*"):
            if checkpoint_step is None or int(checkpoint.name[5:]) > checkpoint_step:
                shutil.rmtree(checkpoint)
        return crashed

    return run, crash


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resumed_train_loss_equals_the_uninterrupted_one(straight):
    import paretune

    run, crash = straight
    crashed = crash(7)  # the evaluation at 10 averages steps 6..10: 6 and 7 were before the kill
    paretune.resume(crashed)
    assert [h["train_loss"] for h in _history(crashed)] == [h["train_loss"] for h in _history(run)]


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_over(straight):
    import paretune

    run, crash = straight
    crashed = crash(None)
    shutil.rmtree(crashed / "checkpoints")
    resumed = paretune.resume(crashed)
    assert resumed.metrics["validation"] == json.loads((run / "metrics.json").read_text())["validation"]
    assert [h["step"] for h in _history(crashed)] == [h["step"] for h in _history(run)]


# --- every task names the metrics it reports ----------------------------------------------------
def test_each_tasks_metric_names_are_the_numbers_it_reports():
    import numpy as np

    from paretune.tasks import TASKS, task_options

    outputs = {
        "classification": ([np.array([0.9, 0.1]), np.array([0.2, 0.8])], [0, 1]),
        "multilabel": ([np.array([0.9, 0.1]), np.array([0.2, 0.8])], [np.array([1, 0]), np.array([0, 1])]),
        "regression": ([np.array([0.5]), np.array([1.5])], [0.4, 1.7]),
        "ner": ([np.array([[0.9, 0.1], [0.1, 0.9]])], [[0, 1]]),
        "generation": ([np.array([2.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0])], ["a", "b"]),  # nll, tokens, right
        "mlm": ([np.array([1.0, 2.0, 1.5]), np.array([0.0, 1.0, 2.0])], [0, 0]),  # right, masked, nll
        "image-classification": ([np.array([0.9, 0.1]), np.array([0.2, 0.8])], [0, 1]),
        "image-multilabel": ([np.array([0.9, 0.1]), np.array([0.2, 0.8])], [np.array([1, 0]), np.array([0, 1])]),
        # rewards, then summed log-probs, of the chosen and the rejected answer
        "preference": ([np.array([0.2, -0.1, -3.0, -4.0]), np.array([0.1, 0.3, -2.0, -2.5])], [None, None]),
        "kg-completion": ([np.array([1.0, 2.0]), np.array([3.0, 1.5])], [None, None]),  # tail and head ranks
    }
    labels = {"ner": ["O", "B-PER"]}
    for name, task_type in TASKS.items():
        settings = task_options({"type": name, **({"tag_scheme": "iob2"} if name == "ner" else {})})
        task = task_type(settings, labels.get(name, ["a", "b"]))
        reported = task.metrics(*outputs[name])
        numbers = {k for k, v in reported.items() if isinstance(v, (int, float))}
        assert set(task.metric_names) == numbers, name


def test_compress_overwrite_replaces_its_output_only_when_done(short, tmp_path):
    import paretune
    from paretune.compression.run import compress_run
    from paretune.compression.run_writer import BenchSettings

    parent = paretune.finetune(short).path
    out = tmp_path / "small"
    off = BenchSettings(enabled=False)
    assert compress_run(parent, "fp16", output=out, bench=off) == out
    first = (out / "metrics.json").stat().st_mtime_ns
    assert compress_run(parent, "fp16", output=out, bench=off, overwrite=True) == out
    assert (out / "metrics.json").stat().st_mtime_ns != first
    assert not (tmp_path / "small.staging").exists() and not (tmp_path / "small.replaced").exists()
    assert (parent / "model" / "model.safetensors").is_file()

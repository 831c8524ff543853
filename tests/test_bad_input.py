"""Bad input through the `paretune` command: exit code 2, no traceback, a message that says where.

Every case runs through `paretune.cli.main`, the function behind the console script, in this
process: a fresh `paretune` process spends 5-10 s importing torch, transformers and scikit-learn,
too slow for a dozen cases. `test_installed_command_*` then runs two of the same cases through
the installed executable, side by side, to check the process boundary: exit status and stderr.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import sentiment_rows, write_csv

RUN_FILES = {"config.yaml": "kept: true\n", "metrics.json": '{"kept": true}\n'}


def paretune_executable() -> str:
    """The console script of the Python running the tests (not a shim that may pick another)."""
    beside = Path(sysconfig.get_path("scripts")) / "paretune"
    found = str(beside) if beside.is_file() else shutil.which("paretune")
    assert found, "the `paretune` command is not installed: pip install -e ."
    return found


@dataclass
class Case:
    args: list[str]
    output_dir: Path | None = None  # the run folder a train command would create


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


@pytest.fixture(scope="module")
def cases(folder: Path, tiny_model_dir: Path) -> dict[str, Case]:
    good = sentiment_rows(12, seed=1)
    train = write_csv(folder / "train.csv", good)
    sections = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(train), "validation": str(train), "max_length": 32,
                 "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 1, "batch_size": 4},
    }
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(sections))
    unknown_key = folder / "typo.yaml"
    unknown_key.write_text(yaml.safe_dump({**sections, "training": {**sections["training"], "epochz": 2}}))

    def train_with(name: str, *settings: str) -> Case:
        output_dir = folder / f"run-{name}"
        args = ["train", str(config), "--set", f"output.dir={output_dir}"]
        for setting in settings:
            args += ["--set", setting]
        return Case(args, output_dir)

    def train_on(name: str, path: Path) -> Case:
        return train_with(name, f"data.train={path}")

    bad_rows = {
        "empty_text": good[:2] + [("", "positive")] + good[3:],
        "missing_label": good[:1] + [(good[1][0], "")] + good[2:],
    }
    latin1 = folder / "latin1.csv"
    latin1.write_bytes("text,label\nfine film,positive\nthe caf\u00e9 was dull,negative\n".encode("latin-1"))
    unseen = write_csv(folder / "unseen.csv", good[:3] + [("a so-so film", "neutral")])
    existing_run = folder / "run-exists"
    existing_run.mkdir()
    for name, text in RUN_FILES.items():
        (existing_run / name).write_text(text)
    not_a_run = folder / "not-a-run"
    not_a_run.mkdir()
    inputs = write_csv(folder / "inputs.csv", [(t,) for t, _ in good], header=("text",))

    return {
        "missing_file": train_on("missing_file", folder / "nowhere.csv"),
        "missing_text_column": train_on("missing_text_column", write_csv(
            folder / "no_text.csv", good, header=("sentence", "label"))),
        "missing_label_column": train_on("missing_label_column", write_csv(
            folder / "no_label.csv", good, header=("text", "sentiment"))),
        "empty_text": train_on("empty_text", write_csv(folder / "empty_text.csv", bad_rows["empty_text"])),
        "missing_label": train_on("missing_label", write_csv(
            folder / "missing_label.csv", bad_rows["missing_label"])),
        "unseen_validation_label": train_with("unseen_validation_label", f"data.validation={unseen}"),
        "latin1": train_on("latin1", latin1),
        "unknown_key": Case(["train", str(unknown_key), "--set", f"output.dir={folder / 'run-typo'}"],
                            folder / "run-typo"),
        "wrong_type": train_with("wrong_type", "training.epochs=abc"),
        "bad_set_syntax": train_with("bad_set_syntax", "training.lr"),
        "unknown_method": train_with("unknown_method", "method.name=lora-typo"),
        "too_many_layers": train_with("too_many_layers", "method.name=freeze", "method.trainable_layers=3"),
        "too_many_layers_again": train_with("too_many_layers_again", "method.name=freeze",
                                            "method.trainable_layers=3"),
        "run_exists": Case(["train", str(config), "--set", f"output.dir={existing_run}"]),
        "eval_not_a_run": Case(["eval", str(not_a_run), "--data", str(train)]),
        "predict_not_a_run": Case(["predict", str(not_a_run), "--input", str(inputs),
                                   "--output", str(folder / "preds.jsonl")]),
    }




@dataclass
class Outcome:
    exit_code: int | str | None
    stdout: str
    stderr: str


def run_in_process(args: list[str]) -> Outcome:
    """`paretune ARGS` through `main()`: an exception other than a user error propagates."""
    from paretune.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the command reconfigures logging; put it back
    stdout, stderr = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["paretune", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            with pytest.raises(SystemExit) as exited:
                main()
    finally:
        sys.argv = argv
        root.handlers[:] = handlers
        root.setLevel(level)
    return Outcome(exited.value.code, stdout.getvalue(), stderr.getvalue())


def user_error(outcome: Outcome, expected: list[str]) -> str:
    """The message of a run that must fail as a user error, checked to hold every expected part."""
    assert outcome.exit_code == 2, f"exit {outcome.exit_code}\n{outcome.stderr[-3000:]}"
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert "error: " in outcome.stderr, outcome.stderr[-3000:]
    message = outcome.stderr[outcome.stderr.index("error: "):]
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"
    return message


# Data rows are numbered from 1 after the header, lines from 1 at the top of the file.
DATA_PROBLEMS = {
    "missing_file": ["nowhere.csv", "file not found"],
    "missing_text_column": ["no_text.csv", "field 'text'", "no text column", "sentence, label"],
    "missing_label_column": ["no_label.csv", "field 'label'", "no label column", "data.label_column"],
    "empty_text": ["empty_text.csv, row 3, line 4, field 'text'", "text is empty"],
    "missing_label": ["missing_label.csv, row 2, line 3, field 'label'", "label is missing"],
    "unseen_validation_label": ["unseen.csv, row 4, line 5, field 'label'", "'neutral'", "negative, positive"],
    "latin1": ["latin1.csv, line 3", "0xe9", "data.encoding"],
}
CONFIG_PROBLEMS = {
    "unknown_key": ["typo.yaml", "training.epochz: unknown key"],
    "wrong_type": ["config.yaml", "training.epochs", "'abc'"],
    "bad_set_syntax": ["--set 'training.lr'", "key=value"],
    "unknown_method": ["method", "'lora-typo'", "'full'", "'freeze'"],
}
NOT_A_RUN = ["not-a-run", "not a paretune run folder"]


@pytest.mark.parametrize("name", list(DATA_PROBLEMS))
def test_data_problem_is_reported_before_any_run_folder(cases, name):
    user_error(run_in_process(cases[name].args), DATA_PROBLEMS[name])
    assert not cases[name].output_dir.exists(), "a data error must stop before the run folder is made"


@pytest.mark.parametrize("name", list(CONFIG_PROBLEMS))
def test_config_problem_is_reported(cases, name):
    user_error(run_in_process(cases[name].args), CONFIG_PROBLEMS[name])
    assert not cases[name].output_dir.exists()


TOO_MANY_LAYERS = ["method.trainable_layers=3", "2 transformer blocks"]  # the tiny model has 2


def test_method_option_the_model_cannot_take_is_a_user_error(cases):
    user_error(run_in_process(cases["too_many_layers"].args), TOO_MANY_LAYERS)


def test_method_option_the_model_cannot_take_leaves_no_run_folder(cases):
    case = cases["too_many_layers_again"]
    user_error(run_in_process(case.args), TOO_MANY_LAYERS)
    assert not case.output_dir.exists()


def test_existing_run_folder_is_left_alone(cases, folder):
    user_error(run_in_process(cases["run_exists"].args), ["run-exists", "--resume", "overwrite"])
    existing = folder / "run-exists"
    assert sorted(p.name for p in existing.iterdir()) == sorted(RUN_FILES)
    for name, text in RUN_FILES.items():
        assert (existing / name).read_text() == text


@pytest.mark.parametrize("name", ["eval_not_a_run", "predict_not_a_run"])
def test_eval_and_predict_need_a_run_folder(cases, folder, name):
    user_error(run_in_process(cases[name].args), NOT_A_RUN)
    assert not (folder / "preds.jsonl").exists()


# --- the installed executable ---------------------------------------------------------------

# One case per command kind; main() handles every user error the same way after that.
THROUGH_EXECUTABLE = {"empty_text": DATA_PROBLEMS["empty_text"], "predict_not_a_run": NOT_A_RUN}


@pytest.fixture(scope="module")
def executable_outcomes(cases, folder) -> dict[str, Outcome]:
    executable = paretune_executable()

    def run(name: str) -> Outcome:
        done = subprocess.run([executable, *cases[name].args], cwd=folder, capture_output=True,
                              text=True, timeout=300)
        return Outcome(done.returncode, done.stdout, done.stderr)

    workers = max(1, min(len(os.sched_getaffinity(0)), len(THROUGH_EXECUTABLE)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(THROUGH_EXECUTABLE, pool.map(run, THROUGH_EXECUTABLE)))


@pytest.mark.parametrize("name", list(THROUGH_EXECUTABLE))
def test_installed_command_exits_2_with_the_message(executable_outcomes, name):
    user_error(executable_outcomes[name], THROUGH_EXECUTABLE[name])

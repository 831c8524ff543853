"""`paretune generate --input F --output O`: resumed after a kill only into a partial of the same input,
run and settings, a torn last line cut off, one job at a time, SIGTERM a clean stop; `--stop ''` and
an oversized `--max-new-tokens` handled before any decoding. The answers come from a stand-in task,
so these tests see the writer, not a model."""
from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from paretune.data.examples import Example
from paretune.errors import ParetuneError
from paretune.generate_text import answer_file, capped
from paretune.resumable_output import OutputLock
from paretune.tasks.decoding import DecodeSettings

CHUNK = 3


class StandInTask:
    """Reads {"prompt"} lines and answers "<prompt>!"; `crash_after` chunks, then raises as a kill would."""

    generates, name, config = True, "generation", None

    def __init__(self, crash_after: int | None = None, on_crash=KeyboardInterrupt):
        self.left, self.on_crash, self.calls = crash_after, on_crash, 0

    def read_examples(self, path, config, require_labels=False):
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        return [Example(json.loads(line)["prompt"], None, row) for row, line in enumerate(lines, 1)]

    def answer(self, model, tokenizer, examples, device, settings):
        self.calls += 1
        if self.left is not None:
            if self.left == 0:
                if self.on_crash == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                else:
                    raise self.on_crash
            self.left -= 1
        return [f"{ex.text}!" for ex in examples]


def predictor(tmp_path: Path, task: StandInTask) -> SimpleNamespace:
    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=64))
    return SimpleNamespace(task=task, model=model, tokenizer=None, device="cpu", run_dir=tmp_path / "run")


def prompts(path: Path, words: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": w}) + "\n" for w in words), encoding="utf-8")
    return path


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


SETTINGS = DecodeSettings(max_new_tokens=4)
WORDS = [f"w{i}" for i in range(1, 11)]


def crash(tmp_path, input_path, output, chunks: int) -> None:
    with pytest.raises(KeyboardInterrupt):
        answer_file(predictor(tmp_path, StandInTask(crash_after=chunks)), input_path, output, SETTINGS,
                    chunk_rows=CHUNK)


def test_a_torn_last_line_is_cut_off_and_its_row_answered_again(tmp_path):
    source, output = prompts(tmp_path / "in.jsonl", WORDS), tmp_path / "answers.jsonl"
    crash(tmp_path, source, output, chunks=2)
    partial = tmp_path / "answers.jsonl.partial"
    lines = partial.read_text(encoding="utf-8").splitlines()
    lines[0] = json.dumps({"row": 1, "completion": "KEPT"})  # a finished line is kept, not redone
    partial.write_text("\n".join(lines) + '\n{"row": 7, "compl', encoding="utf-8")  # killed mid-write

    task = StandInTask()
    rows, done = answer_file(predictor(tmp_path, task), source, output, SETTINGS, chunk_rows=CHUNK)
    assert (rows, done) == (10, 2 * CHUNK)
    answers = rows_of(output)  # every line whole JSON: nothing glued onto the fragment
    assert [a["row"] for a in answers] == list(range(1, 11))
    assert answers[0]["completion"] == "KEPT" and answers[6]["completion"] == "w7!"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("answers")) == ["answers.jsonl"]


def test_another_input_or_other_settings_start_over(tmp_path):
    output = tmp_path / "answers.jsonl"
    crash(tmp_path, prompts(tmp_path / "long.jsonl", WORDS * 10), output, chunks=3)  # a 100-row job, 9 done
    short = prompts(tmp_path / "short.jsonl", ["a", "b"])
    rows, done = answer_file(predictor(tmp_path, StandInTask()), short, output, SETTINGS, chunk_rows=CHUNK)
    assert (rows, done) == (2, 0) and [a["completion"] for a in rows_of(output)] == ["a!", "b!"]

    source = prompts(tmp_path / "in.jsonl", WORDS)
    crash(tmp_path, source, output, chunks=1)
    other = DecodeSettings(max_new_tokens=4, seed=1)  # the same input, answered with another seed
    assert answer_file(predictor(tmp_path, StandInTask()), source, output, other, chunk_rows=CHUNK)[1] == 0


def test_a_second_job_on_the_same_output_is_refused_and_the_lock_goes_with_the_first(tmp_path):
    source, output = prompts(tmp_path / "in.jsonl", WORDS), tmp_path / "answers.jsonl"
    first = OutputLock(tmp_path / "answers.jsonl.lock", output, "paretune generate")
    first.acquire()
    try:
        with pytest.raises(ParetuneError, match=r"another `paretune generate` is writing .*answers\.jsonl"):
            answer_file(predictor(tmp_path, StandInTask()), source, output, SETTINGS)
    finally:
        first.release()
    assert not output.exists() and not (tmp_path / "answers.jsonl.lock").exists()
    assert answer_file(predictor(tmp_path, StandInTask()), source, output, SETTINGS) == (10, 0)
    assert not (tmp_path / "answers.jsonl.lock").exists()


def test_an_output_that_is_the_users_own_file_is_refused(tmp_path):
    source = prompts(tmp_path / "in.jsonl", WORDS)
    mine = tmp_path / "notes.csv"
    mine.write_text("text,label\nmine,a\n")
    for output in (source, mine):
        with pytest.raises(ParetuneError, match="--output"):
            answer_file(predictor(tmp_path, StandInTask()), source, output, SETTINGS)
    assert mine.read_text() == "text,label\nmine,a\n"


def test_sigterm_stops_cleanly_with_143_and_keeps_the_finished_lines(tmp_path):
    def not_handled(signum, frame):  # what the default would do, without killing the test process
        raise AssertionError("SIGTERM reached the default handler")

    source, output = prompts(tmp_path / "in.jsonl", WORDS), tmp_path / "answers.jsonl"
    before = signal.signal(signal.SIGTERM, not_handled)
    try:
        with pytest.raises(SystemExit) as stopped:
            answer_file(predictor(tmp_path, StandInTask(crash_after=1, on_crash="sigterm")), source, output,
                        SETTINGS, chunk_rows=CHUNK)
        assert signal.getsignal(signal.SIGTERM) is not_handled  # put back after the job
    finally:
        signal.signal(signal.SIGTERM, before)
    assert stopped.value.code == 143
    assert [a["row"] for a in rows_of(tmp_path / "answers.jsonl.partial")] == [1, 2, 3]
    assert not (tmp_path / "answers.jsonl.lock").exists()
    assert answer_file(predictor(tmp_path, StandInTask()), source, output, SETTINGS, chunk_rows=CHUNK)[1] == CHUNK


def test_an_empty_stop_string_is_refused_before_the_model_loads(tmp_path):
    import typer

    from paretune.cli import generate as generate_cli

    app = typer.Typer()
    generate_cli.register(app)
    refused = CliRunner().invoke(app, [str(tmp_path / "no-such-run"), "--prompt", "hi", "--stop", ""])
    assert refused.exit_code != 0
    assert "--stop ''" in str(refused.exception) and "no-such-run" not in str(refused.exception)


def test_max_new_tokens_is_capped_at_the_context_with_a_warning(tmp_path, caplog):
    stand_in = predictor(tmp_path, StandInTask())
    with caplog.at_level(logging.WARNING, logger="paretune"):
        assert capped(stand_in, DecodeSettings(max_new_tokens=1_000_000)).max_new_tokens == 64
    assert "context of 64 tokens" in caplog.text
    assert capped(stand_in, DecodeSettings(max_new_tokens=12)).max_new_tokens == 12

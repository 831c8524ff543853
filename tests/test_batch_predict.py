"""`paretune predict` on files: streamed in chunks, resumed after a crash, finished atomically."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sentiment_rows, write_csv, write_conll

import paretune
from paretune.batch_predict import predict_file
from paretune.errors import DataError, ParetuneError
from paretune.predictor import Predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = 40
CHUNK = 8


@pytest.fixture(scope="module")
def predictor(tmp_path_factory, tiny_model_dir) -> Predictor:
    """Two training steps: these tests compare with the Predictor, not with the truth."""
    folder = tmp_path_factory.mktemp("batch-predict")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(32, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(8, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 2, "batch_size": 16, "warmup_ratio": 0.0, "seed": 7, "save_every": 10_000},
        "output": {"dir": str(folder / "run")},
    })
    return Predictor.load(run.path, device="cpu")


@pytest.fixture()
def texts() -> list[str]:
    return [text for text, _ in sentiment_rows(ROWS, seed=9)]


@pytest.fixture()
def input_csv(tmp_path, texts) -> Path:
    return write_csv(tmp_path / "input.csv", [(text, "") for text in texts])


class CrashAfter:
    """The real predictor, dying after `chunks` chunks as a killed job would."""

    def __init__(self, inner: Predictor, chunks: int):
        self.inner, self.left = inner, chunks

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, texts, **kwargs):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner.predict(texts, **kwargs)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_row_is_predicted_in_order_chunk_by_chunk(predictor, input_csv, texts, tmp_path):
    output = tmp_path / "out" / "preds.jsonl"
    result = predict_file(predictor, input_csv, output, chunk_rows=CHUNK, all_scores=True)
    assert (result.rows, result.resumed_after) == (ROWS, 0)
    lines = read_lines(output)
    expected = predictor.predict(texts, all_scores=True)
    assert [line["row"] for line in lines] == list(range(1, ROWS + 1))
    assert [line["text"] for line in lines] == texts
    assert [line["label"] for line in lines] == [p["label"] for p in expected]
    assert [line["scores"] for line in lines] == [pytest.approx(p["scores"], abs=1e-5) for p in expected]
    assert sorted(p.name for p in output.parent.iterdir()) == ["preds.jsonl"]  # no partial files left


def test_a_crashed_job_resumes_after_its_last_complete_line(predictor, input_csv, tmp_path):
    output = tmp_path / "preds.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_file(CrashAfter(predictor, chunks=2), input_csv, output, chunk_rows=CHUNK)
    partial = tmp_path / "preds.jsonl.partial"
    assert not output.exists() and len(read_lines(partial)) == 2 * CHUNK
    # Mark a finished line (to see it is kept, not redone) and leave half a line, as a kill mid-write does.
    lines = partial.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "label": "KEPT"})
    partial.write_text("\n".join(lines) + '\n{"row": 17, "te', encoding="utf-8")

    result = predict_file(predictor, input_csv, output, chunk_rows=CHUNK)
    assert result.resumed_after == 2 * CHUNK
    done = read_lines(output)
    assert [line["row"] for line in done] == list(range(1, ROWS + 1))
    assert done[0]["label"] == "KEPT"
    assert not partial.exists() and not (tmp_path / "preds.jsonl.partial.json").exists()


def test_a_changed_input_or_restart_starts_over(predictor, input_csv, tmp_path):
    output = tmp_path / "preds.jsonl"
    partial = tmp_path / "preds.jsonl.partial"

    def crash_and_mark() -> None:
        with pytest.raises(KeyboardInterrupt):
            predict_file(CrashAfter(predictor, chunks=1), input_csv, output, chunk_rows=CHUNK)
        partial.write_text(partial.read_text().replace('"label": "', '"label": "STALE'))

    crash_and_mark()
    with open(input_csv, "a", encoding="utf-8") as f:
        f.write("one more row that is good,\n")
    result = predict_file(predictor, input_csv, output, chunk_rows=CHUNK)
    assert (result.rows, result.resumed_after) == (ROWS + 1, 0)
    assert not any(line["label"].startswith("STALE") for line in read_lines(output))

    crash_and_mark()
    assert predict_file(predictor, input_csv, output, chunk_rows=CHUNK, restart=True).resumed_after == 0
    assert not any(line["label"].startswith("STALE") for line in read_lines(output))


def test_a_second_job_on_the_same_output_is_refused(predictor, input_csv, tmp_path):
    import fcntl

    output = tmp_path / "preds.jsonl"
    with open(tmp_path / "preds.jsonl.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ParetuneError, match="another `paretune predict` is writing .*preds.jsonl"):
            predict_file(predictor, input_csv, output)
    # Once the holder has gone, jobs run again; each removes its lock file when it ends.
    predict_file(predictor, input_csv, output, chunk_rows=CHUNK)
    finished = output.read_bytes()
    predict_file(predictor, input_csv, output, chunk_rows=CHUNK)
    assert output.read_bytes() == finished and not (tmp_path / "preds.jsonl.lock").exists()


def test_bad_rows_are_all_reported_before_any_prediction(predictor, tmp_path):
    rows = [("a fine film", ""), ("  ", ""), ("good", ""), ("", "")]
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as caught:
        predict_file(predictor, path, tmp_path / "preds.jsonl")
    assert "row 2" in str(caught.value) and "row 4" in str(caught.value)
    assert list(tmp_path.glob("preds*")) == []
    with pytest.raises(DataError, match="no text column"):
        predict_file(predictor, path, tmp_path / "preds.jsonl", text_column="sentence")


def test_jsonl_parquet_and_conll_inputs_give_the_same_predictions(predictor, texts, tmp_path):
    expected = [p["label"] for p in predictor.predict(texts)]
    jsonl = tmp_path / "input.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "text": t}) + "\n\n" for i, t in enumerate(texts)))
    parquet = tmp_path / "input.parquet"
    pq.write_table(pa.table({"text": texts}), parquet, row_group_size=7)
    conll = write_conll(tmp_path / "input.conll", [(t.split(), ["O"] * len(t.split())) for t in texts])
    for path in (jsonl, parquet, conll):
        output = tmp_path / f"{path.suffix[1:]}.jsonl"
        predict_file(predictor, path, output, chunk_rows=CHUNK)
        assert [line["label"] for line in read_lines(output)] == expected, path


def test_output_never_replaces_the_input_or_a_file_of_the_user(predictor, input_csv, tmp_path):
    before = input_csv.read_bytes()
    with pytest.raises(ParetuneError, match="is the input file"):
        predict_file(predictor, input_csv, input_csv, overwrite=True)
    assert input_csv.read_bytes() == before
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"mine": 1}\n', encoding="utf-8")
    with pytest.raises(ParetuneError, match="--overwrite"):
        predict_file(predictor, input_csv, notes)
    assert notes.read_text(encoding="utf-8") == '{"mine": 1}\n'
    with pytest.raises(ParetuneError, match="is a folder"):
        predict_file(predictor, input_csv, tmp_path)
    predict_file(predictor, input_csv, notes, overwrite=True)  # said so: replaced
    assert len(read_lines(notes)) == ROWS
    predict_file(predictor, input_csv, notes)  # our own earlier predictions: a rerun replaces them
    assert len(read_lines(notes)) == ROWS

"""`paretune audit`: each check on data built to hold its problem, and the command end to end on the
tiny model (its random embeddings say nothing about labels, so label finding is checked on
synthetic features where the answer is known)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import sentiment_rows, write_csv
from typer.testing import CliRunner

from paretune.audit import duplicates, labels
from paretune.audit.clean import write_clean
from paretune.errors import ParetuneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_flipped_labels_rank_first_on_separable_features():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 100)
    features = rng.normal(size=(200, 8)) + truth[:, None] * 3.0
    noisy = truth.copy()
    flipped = rng.choice(200, 10, replace=False)
    noisy[flipped] = 1 - noisy[flipped]
    probs = labels.embedding_probs(features, noisy, 2, folds=5, seed=0)
    issues = labels.find_issues(noisy, probs)
    assert {i.index for i in issues[:10]} == set(flipped.tolist())
    assert all(i.flagged for i in issues[:10]) and issues[0].score >= issues[10].score
    assert {i.index for i in issues if i.flagged} >= set(flipped.tolist())


def test_near_and_exact_duplicates_within_and_across():
    unit = np.eye(4, dtype=np.float32)
    near = np.array([0.99, 0.14, 0, 0], dtype=np.float32)
    train = np.stack([unit[0], unit[1], unit[0], near / np.linalg.norm(near)])
    texts = ["A  film", "b", "a film", "a film!"]
    within = duplicates.find_pairs(texts, train, 0.95)
    assert [(p.index, p.other, p.exact) for p in within] == [(2, 0, True), (3, 0, False)]
    leaks = duplicates.find_pairs(texts, train, 0.95, ["b"], unit[1:2])
    assert [(p.index, p.other, p.exact) for p in leaks] == [(1, 0, True)]


def test_write_clean_drops_whole_rows_and_never_overwrites(tmp_path):
    source = tmp_path / "train.csv"
    source.write_text('text,label\n"one\nline two",a\n\nsecond,b\nthird,a\n')
    out = tmp_path / "clean.csv"
    assert write_clean(source, "csv", {1, 3}, out) == 1
    assert out.read_text() == "text,label\n\nsecond,b\n"
    with pytest.raises(ParetuneError, match="input file"):
        write_clean(source, "csv", set(), source)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "x", "label": 1}\n\n{"text": "y", "label": 0}\n')
    write_clean(jsonl, "jsonl", {2}, tmp_path / "c.jsonl")
    assert (tmp_path / "c.jsonl").read_text() == '{"text": "x", "label": 1}\n\n'


def test_write_clean_relabels_suspect_rows_leaving_the_rest_byte_identical(tmp_path):
    source = tmp_path / "train.csv"
    source.write_text('text,label\n"one, ""two""",a\nsecond,b\nthird,a\n')
    assert write_clean(source, "csv", {3}, tmp_path / "c.csv", relabel={1: "b", 3: "b"}) == 2
    assert (tmp_path / "c.csv").read_text() == 'text,label\n"one, ""two""",b\nsecond,b\n'
    tsv = tmp_path / "t.tsv"
    tsv.write_text('sentence\tlabel\nit "was" fine\t0\nbad\t0\n')
    write_clean(tsv, "tsv", set(), tmp_path / "c.tsv", relabel={1: "1"})
    assert (tmp_path / "c.tsv").read_text() == 'sentence\tlabel\nit "was" fine\t1\nbad\t0\n'
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "x", "label": 1}\n{"text": "y", "label": 0}\n')
    write_clean(jsonl, "jsonl", set(), tmp_path / "c.jsonl", relabel={2: "1"})
    assert (tmp_path / "c.jsonl").read_text() == '{"text": "x", "label": 1}\n{"text": "y", "label": 1}\n'
    with pytest.raises(ParetuneError, match="label column .missing."):
        write_clean(tsv, "tsv", set(), tmp_path / "d.tsv", relabel={1: "1"}, label_column="label")  # present: ok
        write_clean(tsv, "tsv", set(), tmp_path / "e.tsv", relabel={1: "1"}, label_column="missing")


def test_audit_command_reports_rows_and_writes_a_clean_copy(tiny_model_dir, tmp_path):
    import typer

    from paretune.cli import audit as audit_cli

    rows = sentiment_rows(60, seed=3)
    rows[10] = rows[4]  # exact duplicate: data row 11 repeats row 5
    rows[20] = ("?!", "positive")  # no word at all: data row 21
    train = write_csv(tmp_path / "train.csv", rows)
    validation = write_csv(tmp_path / "validation.csv", [rows[30], *sentiment_rows(10, seed=4)])
    before = train.read_bytes()
    app = typer.Typer()
    audit_cli.register(app)
    result = CliRunner().invoke(app, [
        str(train), "--validation", str(validation), "--set", f"model.name_or_path={tiny_model_dir}",
        "--set", "data.max_length=32", "--out", str(tmp_path / "report"),
        "--write-clean", str(tmp_path / "clean.csv"), "--fix", "labels", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"file": str(train), "row": 11} == {k: found["duplicates"][0][k] for k in ("file", "row")}
    assert found["duplicates"][0]["same_as"]["row"] == 5
    assert any(leak["row"] == 31 and leak["same_as"]["row"] == 1 for leak in found["leaks"])
    assert any(row["row"] == 21 for row in found["lengths"])
    assert all({"file", "row", "score"} <= set(item) for item in found["suspect_labels"])
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.json", "report.md", "audit.png"}
    assert train.read_bytes() == before
    clean = (tmp_path / "clean.csv").read_text().splitlines()
    assert len(clean) == 1 + found["clean_copy"]["rows_kept"] and "?!,positive" not in clean
    assert "labels" not in found["clean_copy"]["dropped_for"]  # --fix labels relabels instead of dropping
    dropped = {r["row"] for k in ("duplicates", "leaks", "lengths") for r in found[k] if r["file"] == str(train)}
    assert found["clean_copy"]["rows_relabelled"] == len({s["row"] for s in found["suspect_labels"]} - dropped)


def test_finetune_mode_gives_out_of_fold_probabilities(tiny_config, tmp_path):
    from paretune.audit.run import AuditOptions, audit
    from paretune.config import config_from_dict

    tiny_config["training"].update({"epochs": 1, "batch_size": 16})
    tiny_config["data"]["train"] = str(write_csv(tmp_path / "small.csv", sentiment_rows(40, seed=6)))
    found = audit(config_from_dict(tiny_config), AuditOptions(mode="finetune", folds=2))
    assert found["label_probabilities"]["mode"] == "finetune"
    assert 0 <= found["label_probabilities"]["out_of_fold_accuracy"] <= 1


def test_both_mode_averages_the_two_sources_of_probabilities(monkeypatch):
    import numpy as np

    from paretune.audit import finetune_probs, labels, run

    targets = np.array([0, 1, 1, 0])
    finetuned = np.array([[0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.6, 0.4]])
    embedded = np.array([[0.7, 0.3], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    monkeypatch.setattr(finetune_probs, "finetune_probs", lambda *a: finetuned)
    monkeypatch.setattr(labels, "embedding_probs", lambda *a: embedded)
    seen = {}

    def find_issues(targets, probs):
        seen["probs"] = probs
        return []

    monkeypatch.setattr(labels, "find_issues", find_issues)
    train = SimpleNamespace(targets=list(targets), where=None, texts=[""] * 4)
    data = SimpleNamespace(single_label=True, train=train, task=SimpleNamespace(label_names=["a", "b"]))
    _, about = run._label_findings(None, data, {"train": None}, run.AuditOptions(mode="both"))
    assert np.allclose(seen["probs"], (finetuned + embedded) / 2)
    # rows 0 and 1 right; 3 ties at 0.5 -> class 0; no better than always answering one class
    assert {k: about[k] for k in ("out_of_fold_accuracy", "mode", "reliable")} == {
        "out_of_fold_accuracy": 0.5, "mode": "both", "reliable": False}


def test_max_labels_limits_the_clean_copy_to_the_most_suspect_rows(tmp_path):
    from types import SimpleNamespace

    from paretune.cli.audit import _clean_copy

    train = write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")])
    suspects = [{"file": str(train), "row": r, "score": s, "suggested": "y" if r != 2 else "x"}
                for r, s in ((3, 0.9), (1, 0.8), (2, 0.6))]  # ranked most-suspect first
    findings = {"files": {"train": {"file": str(train)}}, "suspect_labels": suspects}
    config = SimpleNamespace(data=SimpleNamespace(format=None, encoding="utf-8", label_column="label"))
    done = _clean_copy(findings, config, tmp_path / "top2.csv", ["labels"], [], max_labels=2)
    assert (tmp_path / "top2.csv").read_text().splitlines() == ["text,label", "b,y", "d,y"]
    assert done["rows_dropped"] == 2 and done["max_labels"] == 2
    done = _clean_copy(findings, config, tmp_path / "fix1.csv", ["labels"], ["labels"], max_labels=1)
    assert (tmp_path / "fix1.csv").read_text().splitlines() == ["text,label", "a,x", "b,y", "c,y", "d,y"]
    assert done["rows_relabelled"] == 1 and done["rows_dropped"] == 0
    assert len(findings["suspect_labels"]) == 3  # the report keeps every suspect


def test_max_labels_without_a_clean_copy_is_refused(tmp_path):
    import typer

    from paretune.cli import audit as audit_cli

    app = typer.Typer()
    audit_cli.register(app)
    train = write_csv(tmp_path / "train.csv", sentiment_rows(10))
    result = CliRunner().invoke(app, [str(train), "--max-labels", "5"])
    assert result.exit_code != 0 and "--write-clean" in str(result.exception or result.output)


def test_a_decoder_without_a_padding_token_embeds(tmp_path):
    from generation_fixtures import tiny_llama_dir

    from paretune.audit.embed import embed_texts, load_encoder
    from paretune.config.schema import ModelConfig

    folder = tiny_llama_dir(tmp_path / "llama")
    tokenizer_config = folder / "tokenizer_config.json"
    raw = json.loads(tokenizer_config.read_text())
    raw.pop("pad_token", None)
    tokenizer_config.write_text(json.dumps(raw))
    tokenizer, encoder = load_encoder(ModelConfig(name_or_path=str(folder)))
    vectors = embed_texts(["a great film", "dull"], tokenizer, encoder, 16)
    assert vectors.shape == (2, encoder.config.hidden_size)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_a_weak_audit_model_says_its_suspects_are_unreliable_first(tmp_path):
    from paretune.audit.report import markdown

    balanced = np.repeat([0, 1], 600)
    weak = labels.reliability(0.746, balanced)  # the sentiment example's embedding audit
    assert not weak["reliable"] and weak["majority_baseline"] == 0.5 and "74.6%" in weak["warning"]
    assert labels.reliability(0.95, balanced)["reliable"]
    assert not labels.reliability(0.92, np.array([0] * 90 + [1] * 10))["reliable"]  # 90% from the largest class
    findings = {"files": {"train": {"file": "train.csv", "rows": 1200}}, "labels": ["negative", "positive"],
                "options": {}, "suspect_labels": [{"file": "train.csv", "row": 3, "score": 0.9, "label": "negative",
                                                   "suggested": "positive", "text": "not bad"}],
                "label_probabilities": {"out_of_fold_accuracy": 0.746, "mode": "embeddings", **weak}}
    report = markdown(findings)
    assert report.index("Warning: the suspect labels are unreliable") < report.index("| check | rows |")
    assert "Unreliable" in report.split("## Likely mislabeled rows")[1].split("##")[0]


def test_one_label_is_a_clear_error_and_a_label_with_one_row_is_audited():
    from paretune.audit import run

    train = SimpleNamespace(targets=[1] * 6, where=None, texts=["same"] * 6, file="train.csv")
    data = SimpleNamespace(single_label=True, train=train, task=SimpleNamespace(label_names=["neg", "pos"]))
    with pytest.raises(ParetuneError, match="train.csv: every training row has the label 'pos'"):
        run._label_findings(None, data, {"train": np.ones((6, 4))}, run.AuditOptions())
    rng = np.random.default_rng(0)
    rare = np.array([0] * 9 + [1])  # the one `1` is held out in one fold: its fit rows hold only `0`
    probs = labels.embedding_probs(rng.normal(size=(10, 4)), rare, 2, folds=5, seed=0)
    assert probs.shape == (10, 2) and np.allclose(probs.sum(1), 1)
    assert probs[9].tolist() == [1.0, 0.0]


def test_out_never_replaces_report_files_paretune_did_not_write(tiny_model_dir, tmp_path):
    import typer

    from paretune.audit.report import check_report_folder, write_report
    from paretune.cli import audit as audit_cli

    earlier = {"files": {"train": {"file": "t.csv", "rows": 2}}, "labels": [], "options": {},
               "suspect_labels": []}
    write_report(earlier, tmp_path / "earlier")
    check_report_folder(tmp_path / "earlier")  # an earlier audit's report: replaced by a rerun
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes")
    app = typer.Typer()
    audit_cli.register(app)
    train = write_csv(tmp_path / "train.csv", sentiment_rows(10))
    result = CliRunner().invoke(app, [str(train), "--set", f"model.name_or_path={tiny_model_dir}", "--out", str(mine)])
    assert result.exit_code != 0 and "report.md that paretune audit did not write" in str(result.exception)
    assert [p.name for p in mine.iterdir()] == ["report.md"] and (mine / "report.md").read_text() == "my own notes"

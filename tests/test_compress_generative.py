"""Compressing a generative run (a tiny random Llama trained on toy instructions): the child is
scored on its generated answers like its parent, ranked by them on the frontier, written through
a staging folder, and refused up front where a method cannot give a model that generates."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl

import paretune
from paretune.compression.parent import Parent
from paretune.compression.run import compress_run
from paretune.compression.run_writer import BenchSettings
from paretune.errors import ParetuneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_BENCH = BenchSettings(enabled=False)


@pytest.fixture(scope="module")
def chat_parent(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("compress-chat")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_llama_dir(folder / "llama"))},
        "task": {"type": "generation", "generate_rows": 8, "max_new_tokens": 3},
        "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(48, 1))),
                 "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(8, 2))),
                 "max_length": 48, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 6, "batch_size": 16, "lr": 3e-3, "seed": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "chat")},
    })
    return run.path


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_quantized_children_are_scored_on_their_answers_and_ranked_by_them(chat_parent, tmp_path):
    from paretune.cli.compress import summary
    from paretune.frontier import build
    from paretune.frontier.points import collect

    bench = BenchSettings(max_seconds=1, batch_size=64, rounds=1)
    int8 = compress_run(chat_parent, "int8-dynamic", output=tmp_path / "chat-int8", bench=bench)
    bf16 = compress_run(chat_parent, "bf16", output=tmp_path / "chat-bf16", bench=NO_BENCH)
    for child in (int8, bf16):
        metrics = _metrics(child)
        assert {"exact_match", "contains", "generated_rows", "perplexity"} <= set(metrics["validation"])
        change = metrics["compression"]["change"]
        assert change["metric"] == "exact_match" and 0 <= change["answer_agreement"] <= 1
        assert change["value"]["exact_match"] == metrics["validation"]["exact_match"]
        assert "perplexity" in change["parent"]
    text = summary(int8, _metrics(int8)).splitlines()
    assert text[1].startswith("  validation exact_match: ") and "answer agreement with the parent" in text[2]
    change = _metrics(int8)["compression"]["change"]
    assert all(change[side]["tokens_per_s"] and change[side]["time_to_first_token_ms"] for side in ("parent", "value"))
    card = (int8 / "README.md").read_text()
    assert change["tokens_per_s_ratio"] > 0 and "| generated tokens/s, batched |" in card
    assert card.startswith("# chat-int8\n") and "Predictor.load('chat-int8')" in card  # not the staging name
    assert "tokens_per_s" not in _metrics(bf16)["compression"]["change"]["value"]  # not benched
    # Like a trained generative run, each child keeps its first answers for the run page (samples.jsonl).
    for child in (int8, bf16):
        samples = [json.loads(line) for line in (child / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == _metrics(child)["validation"]["generated_rows"] == 8
        assert all({"row", "prompt", "reference", "answer", "match"} <= set(row) for row in samples)
        matched = sum(row["match"] for row in samples) / len(samples)
        assert matched == pytest.approx(_metrics(child)["validation"]["exact_match"])
    served = json.loads((int8 / "inference.json").read_text())
    # Whole answers are timed in batches of 8, at the run's own answer length.
    assert served["throughput_batch_size"] == 8 and served["generation"]["max_new_tokens"] == 3
    points, metric = collect([chat_parent, int8, bf16])
    assert metric == "exact_match" and all(p.finished for p in points)
    frontier = build([chat_parent, int8], metric="exact_match")
    assert all(p.finished for p in frontier.points)
    # Both were benched (the parent beside its child): each point shows its generated tokens' speed and price.
    assert all(p.tokens_per_s and p.time_to_first_token_ms and p.serve_usd_per_million_tokens for p in frontier.points)
    assert [p.method for p in frontier.points] == ["full", "full+int8-dynamic"]  # the child says what made it
    from paretune.frontier.report import to_markdown

    header = to_markdown(frontier, image=None).split("| pareto", 1)[1].splitlines()[0]
    assert "| tokens/s | TTFT ms | serve $/1M tokens |" in header


def test_methods_that_cannot_generate_are_refused_before_any_work(chat_parent, tmp_path, monkeypatch):
    def no_work(self):
        raise AssertionError("the parent's model was loaded before the refusal")

    monkeypatch.setattr(Parent, "load_model", no_work)
    for method in ("onnx", "onnx-int8", "prune-heads"):
        with pytest.raises(ParetuneError, match=f"--method {method} does not apply to .*a generation run.*"
                                                "Methods for this run: int8-dynamic, prune-magnitude, drop-layers"):
            compress_run(chat_parent, method, {"heads": 1} if method == "prune-heads" else None,
                         output=tmp_path / method, bench=NO_BENCH)
        assert not (tmp_path / method).exists()
    with pytest.raises(ParetuneError, match=r"prune-heads requires --heads \(--heads: Heads to remove.*BERT-style"):
        compress_run(chat_parent, "prune-heads", output=tmp_path / "heads", bench=NO_BENCH)


def test_a_killed_compress_leaves_nothing_that_loads_and_is_rerun_with_overwrite(chat_parent, tmp_path,
                                                                                monkeypatch):
    import paretune.compression.run as compress_module

    target = tmp_path / "chat-fp16"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # interrupted after model/ was saved, before metrics.json
        patch.setattr(compress_module, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            compress_run(chat_parent, "fp16", output=target, bench=NO_BENCH)
    assert not target.exists() and not Path(f"{target}.staging").exists()

    with monkeypatch.context() as patch:  # a SIGKILL: no cleanup runs, the staging folder stays
        patch.setattr(compress_module, "finish", killed)
        patch.setattr(compress_module, "discard", lambda staging, target: None)
        with pytest.raises(KeyboardInterrupt):
            compress_run(chat_parent, "fp16", output=target, bench=NO_BENCH)
    assert (Path(f"{target}.staging") / "model").is_dir() and not target.exists()
    with pytest.raises(ParetuneError, match="is not a paretune run folder"):
        paretune.Predictor.load(target)

    done = compress_run(chat_parent, "fp16", output=target, bench=NO_BENCH)  # clears the leftover
    assert done == target and (target / "metrics.json").is_file() and not Path(f"{target}.staging").exists()
    assert _metrics(target)["compression"]["method"] == "fp16"
    with pytest.raises(ParetuneError, match="already exists: `paretune compress .* --overwrite` replaces it") as err:
        compress_run(chat_parent, "fp16", output=target, bench=NO_BENCH)
    assert "train --resume" not in str(err.value)
    before = (target / "metrics.json").stat().st_mtime_ns
    time.sleep(0.01)
    assert compress_run(chat_parent, "fp16", output=target, bench=NO_BENCH, overwrite=True) == target
    assert (target / "metrics.json").stat().st_mtime_ns != before and not Path(f"{target}.staging").exists()


def test_a_training_overwrite_left_in_staging_is_not_removed(chat_parent, tmp_path):
    from paretune.run_folder import RunFolder

    target = tmp_path / "chat-bf16"
    staging = Path(f"{target}.staging")  # what `train` overwriting target leaves when killed
    config = RunFolder(chat_parent).read_config()
    run = RunFolder(staging)
    staging.mkdir()
    run.write_config(config.model_copy(update={"output": config.output.model_copy(update={"dir": str(target)})}))
    run.write_json("environment.json", {})
    (staging / "checkpoints" / "step-2").mkdir(parents=True)
    with pytest.raises(ParetuneError, match="unfinished `paretune train`.*train --resume"):
        compress_run(chat_parent, "bf16", output=target, bench=NO_BENCH)
    assert (staging / "checkpoints" / "step-2").is_dir()


def test_a_collapsed_child_is_called_out():
    from paretune.cli.compress import summary

    change = {"metric": "exact_match", "answer_agreement": 0.4, "label_agreement": None, "size_ratio": 0.4,
              "speedup": None, "parent": {"exact_match": 0.983, "perplexity": 1.034, "size_mib": 500.0},
              "value": {"exact_match": 0.383, "perplexity": 378_374_788.0, "size_mib": 200.0}}
    from paretune.compression.agreement import quality_warnings

    change["warnings"] = quality_warnings(change)
    text = summary(Path("runs/chat-drop-layers"), {"compression": {"method": "drop-layers", "change": change}})
    assert "WARNING: validation perplexity rose from 1.034 to 378,374,788" in text
    assert "WARNING: validation exact_match fell from 0.983 to 0.383 (-60.0 points)" in text
    assert "validation perplexity: 378,374,788 vs parent 1.034 (x3.66e+08)" in text  # not "+37837478700 points"

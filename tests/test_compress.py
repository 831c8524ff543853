"""Compression methods on a tiny trained classifier: each writes a run folder that loads back.

One parent run is trained per module; every method compresses it into its own folder and the
result is loaded through `Predictor` (the path the CLI, the server and bench-infer use). Timing
is off except where inference.json itself is under test.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import sentiment_rows, write_csv

import paretune
from paretune import Predictor
from paretune.compression.run import compress_run
from paretune.compression.run_writer import BenchSettings
from paretune.errors import ParetuneError
from paretune.methods.layers import transformer_blocks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_BENCH = BenchSettings(enabled=False)
TEXTS = ["this film was really good", "a dull and boring plot", "the music is lovely", "that ending was horrible"]


@pytest.fixture(scope="module")
def parent(tmp_path_factory, tiny_model_dir) -> Path:
    """A tiny BERT trained to tell the toy sentiment apart (about 100 steps)."""
    folder = tmp_path_factory.mktemp("compress")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(160, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(40, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"epochs": 10, "batch_size": 16, "lr": 1e-3, "seed": 7, "warmup_ratio": 0.0, "load_best": False,
                     "save_every": 10_000},
        "output": {"dir": str(folder / "parent")},
    })
    assert run.validation["accuracy"] >= 0.9, "the parent must have learnt the toy task"
    return run.path


def scores(run_dir: Path) -> torch.Tensor:
    predictions = Predictor.load(run_dir, device="cpu").predict(TEXTS, all_scores=True)
    return torch.tensor([[p["scores"][k] for k in sorted(p["scores"])] for p in predictions])


def entry(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["compression"]


def test_int8_dynamic_writes_a_complete_run_that_reloads_quantized(parent, tmp_path):
    bench = BenchSettings(max_seconds=0.5, repeats=20, batches=3, batch_size=8)
    out = compress_run(parent, "int8-dynamic", output=tmp_path / "int8", bench=bench)
    for name in ("config.yaml", "environment.json", "data.json", "metrics.json", "cost.json", "inference.json",
                 "README.md", "model/paretune.json", "model/model.safetensors"):
        assert (out / name).is_file(), name
    metrics, found = json.loads((out / "metrics.json").read_text()), entry(out)
    assert found["parent"] == str(parent) and found["form"] == {"name": "int8-dynamic", "per_channel": True}
    change = found["change"]
    assert change["metric_delta"] == pytest.approx(metrics["validation"]["accuracy"] - change["parent"]["accuracy"])
    assert 0 < change["size_ratio"] < 1 and change["latency_ratio"] > 0 and change["speedup"] > 0
    cost = json.loads((out / "cost.json").read_text())
    assert cost["wall_s"] > cost["step"]["wall_s"] > 0  # lineage: the parent's training counts too
    model = Predictor.load(out).model
    quantized = [m for m in model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == 2 * 6 + 1  # q, k, v, out, up, down per block, and the pooler; head stays fp32
    assert torch.allclose(scores(out), scores(parent), atol=0.05)
    assert "int8-dynamic" in (out / "README.md").read_text()


def test_onnx_export_matches_pytorch(parent, tmp_path):
    out = compress_run(parent, "onnx", output=tmp_path / "onnx", bench=NO_BENCH)
    found = entry(out)
    assert found["checks"]["max_abs_logit_diff"] < 1e-4
    assert found["settings"]["exporter"] == "dynamo" and found["settings"]["opset"] >= 17
    assert (out / "model" / "model.onnx").is_file() and not (out / "model" / "model.safetensors").exists()
    assert type(Predictor.load(out).model).__name__ == "OrtModel"
    assert torch.allclose(scores(out), scores(parent), atol=1e-5)


def test_onnx_int8_loads_and_stays_close(parent, tmp_path):
    out = compress_run(parent, "onnx-int8", {"exporter": "torchscript"}, output=tmp_path / "onnx8", bench=NO_BENCH)
    found = entry(out)
    assert found["form"]["name"] == "onnx-int8" and found["checks"]["max_abs_logit_diff"] < 0.5
    assert torch.allclose(scores(out), scores(parent), atol=0.1)
    assert json.loads((out / "metrics.json").read_text())["validation"]["accuracy"] >= 0.85
    assert found["change"]["label_agreement"] >= 0.9  # int8 rounding flips few of the 40 answers


def body_sparsity(run_dir: Path) -> float:
    model = Predictor.load(run_dir, device="cpu").model
    weights = [m.weight for m in model.base_model.modules() if isinstance(m, torch.nn.Linear)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_magnitude_pruning_reaches_and_keeps_its_sparsity(parent, tmp_path):
    out = compress_run(parent, "prune-magnitude", {"sparsity": 0.6}, output=tmp_path / "sparse", bench=NO_BENCH)
    assert entry(out)["checks"]["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert body_sparsity(out) == pytest.approx(0.6, abs=1e-3)  # persisted in the saved weights


def test_recovery_fine_tune_keeps_pruned_weights_at_zero(parent, tmp_path):
    out = compress_run(parent, "prune-magnitude", {"sparsity": 0.6}, output=tmp_path / "sparse-recovered",
                       recover_epochs=1, bench=NO_BENCH)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["compression"]["recover_epochs"] == 1
    assert body_sparsity(out) >= 0.6 - 1e-3
    assert "full" in (out / "config.yaml").read_text()  # recovery trains every remaining weight


def test_prune_heads_cuts_the_attention_and_still_predicts(parent, tmp_path):
    out = compress_run(parent, "prune-heads", {"heads": 2}, output=tmp_path / "heads", bench=NO_BENCH)
    found = entry(out)
    assert found["settings"]["heads_after"] == 2 and found["settings"]["heads_per_layer"] == [1, 1]
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["paretune_attention_heads"] == [1, 1]
    model = Predictor.load(out).model
    assert [b.attention.self.query.out_features for b in transformer_blocks(model)] == [16, 16]
    assert scores(out).shape == (len(TEXTS), 2)
    # A pruned model compresses further: int8 rebuilds the cut attention before loading.
    chained = compress_run(out, "int8-dynamic", output=tmp_path / "heads-int8", bench=NO_BENCH)
    assert torch.allclose(scores(chained), scores(out), atol=0.05)


def test_drop_layers_changes_the_config_and_still_predicts(parent, tmp_path):
    out = compress_run(parent, "drop-layers", {"keep_layers": "first:1"}, output=tmp_path / "shallow",
                       bench=NO_BENCH)
    assert json.loads((out / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    assert entry(out)["settings"]["kept"] == [0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["total_params"] < json.loads((parent / "metrics.json").read_text())["total_params"]
    assert scores(out).shape == (len(TEXTS), 2)


@pytest.mark.parametrize("method,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_casts_store_16_bit_weights(parent, tmp_path, method, dtype):
    out = compress_run(parent, method, output=tmp_path / method, bench=NO_BENCH)
    model = Predictor.load(out, device="cpu").model
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert torch.allclose(scores(out), scores(parent), atol=0.05)


def test_bad_requests_fail_with_what_to_do(parent, tmp_path):
    from paretune.cli.compress import _options_for

    with pytest.raises(ParetuneError, match="--sparsity does not apply to --method int8-dynamic"):
        _options_for("int8-dynamic", {"sparsity": 0.5})
    with pytest.raises(ParetuneError, match="sparsity"):
        compress_run(parent, "prune-magnitude", {"sparsity": 1.5}, output=tmp_path / "x", bench=NO_BENCH)
    with pytest.raises(ParetuneError, match="unknown compression method 'zip'"):
        compress_run(parent, "zip", output=tmp_path / "y", bench=NO_BENCH)
    with pytest.raises(ParetuneError, match="--recover-epochs applies to pruning"):
        compress_run(parent, "fp16", output=tmp_path / "z", recover_epochs=1, bench=NO_BENCH)
    with pytest.raises(ParetuneError, match="keeps \\[5\\] but the model has layers 0..1"):
        compress_run(parent, "drop-layers", {"keep_layers": "5"}, output=tmp_path / "w", bench=NO_BENCH)
    cast = compress_run(parent, "bf16", output=tmp_path / "bf16-parent", bench=NO_BENCH)
    with pytest.raises(ParetuneError, match="holds a bf16 model"):
        compress_run(cast, "int8-dynamic", output=tmp_path / "v", bench=NO_BENCH)


def test_compress_command_and_frontier_see_an_ordinary_run(parent, tmp_path):
    from typer.testing import CliRunner

    from paretune.cli import _register, app
    from paretune.frontier.points import collect

    _register()
    out = tmp_path / "cli-shallow"
    result = CliRunner().invoke(app, ["compress", str(parent), "--method", "drop-layers", "--keep-layers",
                                      "every:2", "--output", str(out), "--no-bench", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["method"] == "drop-layers" and printed["run"] == str(out)
    points, metric = collect([parent, out])
    assert metric == "accuracy" and all(p.finished for p in points)


def test_compress_summary_says_what_agreement_and_logit_difference_mean():
    from paretune.cli.compress import summary

    change = {"metric": "accuracy", "label_agreement": 0.987, "metric_delta": -0.003, "size_ratio": 0.3,
              "speedup": None, "parent": {"accuracy": 0.815, "size_mib": 87.0},
              "value": {"accuracy": 0.812, "size_mib": 26.1}}
    metrics = {"compression": {"method": "onnx-int8", "change": change, "checks": {"max_abs_logit_diff": 1.09}}}
    text = summary(Path("runs/x-onnx-int8"), metrics)
    assert "label agreement with the parent: 98.7% of validation predictions" in text
    assert "validation accuracy: 0.812 vs parent 0.815 (-0.3 points)" in text
    assert "max_abs_logit_diff: 1.09 (largest change of any raw score; it matters only where it flips" in text
    assert text.count("max_abs_logit_diff") == 1


def test_label_agreement_counts_classes_and_ner_tokens():
    import numpy as np

    from paretune.compression.agreement import label_agreement, predicted_labels

    parent = predicted_labels("classification", [np.array([0.9, 0.1]), np.array([0.2, 0.8])])
    child = predicted_labels("classification", [np.array([0.6, 0.4]), np.array([0.7, 0.3])])
    assert label_agreement(child, parent) == 0.5
    tokens = [np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2]])]
    assert label_agreement(predicted_labels("ner", tokens), predicted_labels("ner", tokens)) == 1.0
    assert predicted_labels("regression", [np.array([1.5])]) is None

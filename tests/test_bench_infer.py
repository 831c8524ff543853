"""`paretune bench-infer`: inference.json on a tiny trained run, its numbers and the command."""
from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

import paretune
from paretune.cli import bench_infer as bench_infer_cli
from paretune.cost.inference import bench_inference
from paretune.errors import ParetuneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEYS = {"device", "device_name", "latency_ms", "throughput_batch_size", "throughput_per_s", "size_mib",
        "peak_memory_mib", "price", "usd_per_million", "measured_at"}


@pytest.fixture()
def tiny_run(tiny_config):
    tiny_config["training"] |= {"max_steps": 3, "epochs": 1}
    return paretune.finetune(tiny_config).path


def check(result: dict, batch_size: int) -> None:
    assert KEYS <= set(result)
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert result["throughput_batch_size"] == batch_size and result["throughput_per_s"] > 0
    assert result["size_mib"] > 0 and result["peak_memory_mib"] > 0
    per_million = result["price"]["usd_per_hour"] / (result["throughput_per_s"] * 3600) * 1e6
    assert result["usd_per_million"] == pytest.approx(per_million, rel=0.01)


def test_bench_inference_writes_inference_json(tiny_run):
    result = bench_inference(tiny_run, batch_size=16, repeats=25, warmup=2, batches=3, progress=False)
    check(result, 16)
    assert result["device"] == "cpu" and result["latency_calls"] == 25
    assert result["texts"].startswith("validation file")
    assert result["price"]["name"].startswith("aws-m7i")  # the CPU default, by core count
    assert json.loads((tiny_run / "inference.json").read_text()) == result
    card = (tiny_run / "README.md").read_text()
    assert "## Serving cost" in card and "per million predictions" in card


def test_synthetic_texts_when_the_data_is_gone(tiny_run, sentiment_files):
    for path in sentiment_files.values():
        path.unlink()
    result = bench_inference(tiny_run, price="aws-c7i.large", batch_size=8, repeats=20, warmup=1,
                             batches=3, progress=False)
    check(result, 8)
    assert result["texts"].startswith("synthetic") and result["price"]["name"] == "aws-c7i.large"


def test_command_prints_a_table(tiny_run):
    app = typer.Typer()
    bench_infer_cli.register(app)
    result = CliRunner().invoke(app, [str(tiny_run), "--batch-size", "8", "--repeats", "20",
                                      "--price", "0.25", "--max-seconds", "10"])
    assert result.exit_code == 0, result.output
    assert "latency p50 / p95 / p99" in result.output and "$ per 1M predictions" in result.output
    saved = json.loads((tiny_run / "inference.json").read_text())
    assert saved["price"]["usd_per_hour"] == 0.25
    with pytest.raises(ParetuneError, match="Known prices"):
        bench_inference(tiny_run, price="no-such-price", repeats=20, progress=False)


def test_slow_calls_keep_the_time_limit_rough():
    """Whole generated answers are slow calls: the minimum sample no longer stretches the limit tenfold."""
    import time

    from paretune.cost.inference import MIN_LATENCY_SAMPLES, _latency_ms, _throughput

    class SlowPredictor:
        device = "cpu"

        def predict(self, texts, batch_size=64):
            time.sleep(0.03)

    started = time.perf_counter()
    times = _latency_ms(SlowPredictor(), ["a text"], repeats=200, warmup=10, budget_s=0.1, progress=False)
    rows, _ = _throughput(SlowPredictor(), ["a text"], batch_size=8, batches=20, budget_s=0.03, progress=False)
    elapsed = time.perf_counter() - started
    assert 1 <= len(times) < MIN_LATENCY_SAMPLES and rows >= 8
    assert elapsed < 0.6  # was 10 warm-up and 20 timed calls, then 4 batches: 1 s

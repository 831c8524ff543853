"""What serving a finished run costs: latency, throughput, size, memory, dollars per million predictions.

Everything is measured through `Predictor.load` and `Predictor.predict`, the path the CLI and the
server use, so tokenization and post-processing are in the figures, and a run whose model/ the
compression step turned into int8 or ONNX is measured as it would actually serve.
"""
from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from paretune.config.schema import Config, CostConfig
from paretune.cost.device import Device, describe_device, reset_peak_host_memory
from paretune.cost.prices import Price, resolve_price
from paretune.errors import ParetuneError
from paretune.predictor import Predictor
from paretune.resources import PeakMemory
from paretune.run_folder import RunFolder
from paretune.stored import model_folders

log = logging.getLogger("paretune")

INFERENCE_FILE = "inference.json"
MIN_LATENCY_SAMPLES = 20  # percentiles from fewer calls than this say little about p99
MIN_THROUGHPUT_BATCHES = 3
MIN_SLOW_SAMPLES = 1  # past twice a phase's budget, one timed call or batch is enough to stop


def bench_inference(run_dir: str | Path, *, device: str | None = None, price: str | float | None = None,
                    batch_size: int = 64, repeats: int = 200, warmup: int = 10, batches: int = 20,
                    max_seconds: float = 60.0, progress: bool = True,
                    trust_remote_code: bool = False) -> dict[str, Any]:
    """Measure a run's serving cost on this machine and write RUN/inference.json.

    Latency: `repeats` single-text calls after `warmup` untimed ones. Throughput: up to `batches`
    calls of `batch_size` texts. Each phase stops early, after a minimum sample, once it has used
    its half of `max_seconds`. `price` is a table name or dollars per device-hour (docs/cost.md).
    `trust_remote_code` as in `Predictor.load`.
    """
    if batch_size < 1 or repeats < 1 or max_seconds <= 0:
        raise ParetuneError("bench-infer: --batch-size, --repeats and --max-seconds must be positive")
    run = RunFolder.open(run_dir)
    config = run.read_config()
    reset_peak_host_memory()  # the peak must be this model's, not earlier work in this process
    memory = PeakMemory()
    predictor = Predictor.load(run.path, device=device, trust_remote_code=trust_remote_code)
    bench_device = describe_device(getattr(predictor, "device", device or "cpu"))
    chosen = _price(run, config, bench_device, price)

    texts, texts_source = bench_texts(run, config, predictor, max(repeats, batch_size))
    # A generative run also times its tokens afterwards (generation_speed): a third each.
    half = max_seconds / (3 if predictor.task.generates else 2)
    latencies = _latency_ms(predictor, texts, repeats, warmup, half, progress)
    rows, seconds = _throughput(predictor, texts, batch_size, batches, half, progress)
    throughput = rows / seconds
    peaks = memory.read()
    host_mib = peaks["peak_host_rss_mib"]
    device_mib = peaks["peak_device_mib"] if bench_device.type == "cuda" else None
    result = {
        **bench_device.as_dict(),
        "threads": torch.get_num_threads(),
        "latency_ms": {q: round(float(np.percentile(latencies, int(q[1:]))), 3) for q in ("p50", "p95", "p99")},
        "latency_mean_ms": round(float(np.mean(latencies)), 3),
        "latency_calls": len(latencies),
        "throughput_batch_size": batch_size,
        "throughput_per_s": round(throughput, 2),
        "throughput_rows": rows,
        "size_mib": round(model_size_mib(run.model_dir), 3),
        "peak_memory_mib": device_mib if device_mib is not None else host_mib,
        "peak_host_rss_mib": host_mib,
        "peak_device_mib": device_mib,
        "price": chosen.as_dict() if chosen else None,
        "usd_per_million": _usd_per_million(chosen, throughput),
        "texts": texts_source,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if predictor.task.generates:  # a prediction is a whole answer: also time tokens
        from paretune.cost.generation_speed import generation_speed

        # At the run's own answer length, the one its predictions (timed above) generate.
        result["generation"] = generation_speed(predictor, texts, batch_size, chosen,
                                                max_new_tokens=predictor.task.config.max_new_tokens)
    run.write_json(INFERENCE_FILE, result)
    _refresh_card(run)
    return result


def _price(run: RunFolder, config: Config, device: Device, price: str | float | None) -> Price | None:
    """An explicit price wins; else the run's own cost settings if we bench on the device type it
    trained on; else the table's default for this device (a GPU-hour price says nothing of a CPU)."""
    trained_on = _read_json(run, "cost.json").get("device")
    if price is None and trained_on == device.type:
        return resolve_price(config.cost, device)
    return resolve_price(CostConfig(prices_file=config.cost.prices_file), device, override=price)


def _usd_per_million(price: Price | None, per_second: float) -> float | None:
    if price is None or per_second <= 0:
        return None
    return float(f"{price.usd_per_hour / (per_second * 3600) * 1e6:.4g}")


# --- inputs ----------------------------------------------------------------------------------
def bench_texts(run: RunFolder, config: Config, predictor: Predictor, n: int) -> tuple[list, str]:
    """Realistic inputs: the run's validation texts, else its training texts, else synthetic
    texts as long as the training data's average (data.json), in a fixed shuffled order."""
    from paretune.data.prepare import read_split

    for role, path in (("validation", config.data.validation), ("train", config.data.train)):
        if not path or not Path(path).exists():  # a file, or a folder (saved dataset, image classes)
            continue
        try:
            examples = read_split(config, role, path, require_labels=False)
        except (ParetuneError, OSError, ValueError) as err:
            log.info("bench-infer: cannot read %s (%s); trying the next source", path, err)
            continue
        texts = [ex.text for ex in examples if ex.text]
        if texts:
            random.Random(0).shuffle(texts)
            return texts[:n], f"{role} file {path}"
    tokens = _mean_tokens(run, config)
    return synthetic_texts(predictor, tokens, n), f"synthetic, {tokens} tokens each (from data.json)"


def _mean_tokens(run: RunFolder, config: Config) -> int:
    stats = _read_json(run, "data.json")
    if stats.get("train_rows") and stats.get("train_tokens_per_epoch"):
        return max(3, round(stats["train_tokens_per_epoch"] / stats["train_rows"]))
    return config.data.max_length // 2


def synthetic_texts(predictor: Predictor, tokens: int, n: int) -> list:
    """Texts of whole vocabulary words, about `tokens` tokens long with [CLS]/[SEP]-style specials."""
    if predictor.task.takes_images:  # no words to draw from: the task's own sample image
        return [predictor.task.sample_input()] * n
    vocab = sorted(w for w in predictor.tokenizer.get_vocab() if w.isalpha() and len(w) > 1)
    if not vocab:
        raise ParetuneError("bench-infer: no readable texts and no whole words in the tokenizer to make some")
    rng = random.Random(0)
    words = max(1, tokens - 2)
    texts = [[rng.choice(vocab) for _ in range(words)] for _ in range(n)]
    return texts if predictor.task.word_level else [" ".join(t) for t in texts]


# --- measurements ----------------------------------------------------------------------------
class _Budget:
    """When a timed phase stops: past its budget once it has its minimum sample, or past twice
    its budget with a single call (MIN_SLOW_SAMPLES), so slow calls (whole generated answers on a
    CPU) keep `--max-seconds` a rough limit rather than a tenfold one."""

    def __init__(self, seconds: float):
        self.seconds, self.deadline = seconds, time.perf_counter() + seconds

    def spent(self, done: int, minimum: int) -> bool:
        now = time.perf_counter()
        return (now > self.deadline and done >= minimum) or (
            now > self.deadline + self.seconds and done >= MIN_SLOW_SAMPLES)


def _latency_ms(predictor: Predictor, texts: list, repeats: int, warmup: int, budget_s: float,
                progress: bool) -> list[float]:
    warm_until = time.perf_counter() + budget_s / 4
    for i in range(warmup):  # first calls pay for lazy initialisation and allocator growth
        predictor.predict([texts[i % len(texts)]])
        if time.perf_counter() > warm_until:  # slow calls: one or two warm up as well as ten
            break
    times: list[float] = []
    budget = _Budget(budget_s)
    with tqdm(total=repeats, desc="latency (batch 1)", unit="call", disable=None if progress else True) as bar:
        for i in range(repeats):
            if budget.spent(len(times), MIN_LATENCY_SAMPLES):
                break
            started = time.perf_counter()
            predictor.predict([texts[i % len(texts)]])
            _sync(predictor)
            times.append((time.perf_counter() - started) * 1000)
            bar.update()
    return times


def _throughput(predictor: Predictor, texts: list, batch_size: int, batches: int, budget_s: float,
                progress: bool) -> tuple[int, float]:
    def batch(i: int) -> list:
        return [texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)]

    predictor.predict(batch(0), batch_size=batch_size)  # warm-up at this shape
    rows, seconds = 0, 0.0
    budget = _Budget(budget_s)
    batches = max(batches, MIN_THROUGHPUT_BATCHES)
    with tqdm(total=batches, desc=f"throughput (batch {batch_size})", unit="batch",
              disable=None if progress else True) as bar:
        for i in range(1, batches + 1):
            if budget.spent(i - 1, MIN_THROUGHPUT_BATCHES):
                break
            inputs = batch(i)
            started = time.perf_counter()
            predictor.predict(inputs, batch_size=batch_size)
            _sync(predictor)
            seconds += time.perf_counter() - started
            rows += len(inputs)
            bar.update()
    return rows, max(seconds, 1e-9)


def _sync(predictor: Predictor) -> None:
    device = getattr(predictor, "device", None)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def model_size_mib(model_dir: Path) -> float:
    """Every file the model needs: an ensemble's members count too."""
    return sum(f.stat().st_size for d in model_folders(model_dir) for f in Path(d).rglob("*") if f.is_file()) / 2**20


def _read_json(run: RunFolder, name: str) -> dict:
    return run.read_json(name) if (run.path / name).is_file() else {}


def _refresh_card(run: RunFolder) -> None:
    if run.is_finished():
        from paretune.model_card import refresh_model_card

        refresh_model_card(run)

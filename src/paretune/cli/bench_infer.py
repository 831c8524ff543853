"""`paretune bench-infer RUN [--device cuda] [--batch-size 64] [--price NAME|USD_PER_HOUR] [--json]`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from paretune.remote_code import FLAG_HELP


def bench_infer(
    run: Path = typer.Argument(..., help="Finished run folder written by paretune train."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:1; default: GPU if any."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Batch size of the throughput test."),
    price: Optional[str] = typer.Option(
        None, "--price", help="Price table row (e.g. aws-m7i.large) or dollars per device-hour (e.g. 0.5)."
    ),
    repeats: int = typer.Option(200, "--repeats", help="Timed batch-1 calls for the latency percentiles."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Rough time limit of the measurement."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print inference.json's content on stdout."),
) -> None:
    """Measure serving latency, throughput, size, memory and cost per million predictions."""
    from paretune.cost.inference import bench_inference
    from paretune.cost.prices import parse_price_option
    from paretune.logs import setup_logging

    setup_logging()
    result = bench_inference(
        run, device=device, price=parse_price_option(price) if price else None, batch_size=batch_size,
        repeats=repeats, max_seconds=max_seconds, trust_remote_code=trust_remote_code,
    )
    if as_json:
        print(json.dumps(result))
        return
    print(format_inference(result))
    print(f"wrote {run / 'inference.json'}")


def format_inference(result: dict) -> str:
    latency, usd, price = result["latency_ms"], result["usd_per_million"], result["price"]
    rows = [
        ("device", f"{result['device']} ({result['device_name']}), {result['threads']} threads"),
        ("latency p50 / p95 / p99", f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['p99']:.2f} ms"
                                    f"  (batch 1, {result['latency_calls']} calls)"),
        ("throughput", f"{result['throughput_per_s']:.1f} /s  (batch {result['throughput_batch_size']})"),
        ("model size", f"{result['size_mib']:.2f} MiB"),
        ("peak memory", f"{result['peak_memory_mib']:.0f} MiB"),
        ("price", f"{price['name']}: ${price['usd_per_hour']:g}/h ({price['date']})" if price else "none"),
        ("$ per 1M predictions", f"${usd:.4g}" if usd is not None else "unknown (no price: use --price)"),
    ]
    generation = result.get("generation")
    if generation:  # a generative run: its answers timed in tokens too
        per_m = generation["usd_per_million_generated_tokens"]
        rows += [
            ("time to first token", f"{generation['time_to_first_token_ms']:.1f} ms  (batch 1)"),
            ("tokens/s", f"{generation['tokens_per_s_batch_1']} at batch 1, {generation['tokens_per_s_batched']} "
                         f"at batch {generation['batched_prompts']}"),
            ("$ per 1M generated tokens", f"${per_m:.4g}" if per_m is not None else "unknown (no price)"),
        ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def register(app: typer.Typer) -> None:
    app.command("bench-infer")(bench_infer)

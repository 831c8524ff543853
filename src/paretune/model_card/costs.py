"""The card's cost sections: what training cost (cost.json) and what serving costs (inference.json,
after `paretune bench-infer`), with the price each figure rests on."""
from __future__ import annotations

import json
import math
from pathlib import Path


def device_text(cost: dict) -> str:
    name = f" ({cost['device_name']})" if cost.get("device_name") else ""
    return f"{cost['device']}{name} x{cost['device_count']}"


def _price_text(price: dict | None) -> str:
    if not price:
        return "no price set for this device, so no dollars (docs/cost.md: cost.price, --price)"
    if price.get("provider") == "user":
        return f"${price['usd_per_hour']:g} per device-hour, as given in {price['source']}"
    return (f"`{price['name']}`, ${price['usd_per_hour']:g} per device-hour: {price['provider']} "
            f"{price['instance']}, on-demand list price as of {price['date']} ({price['source']})")


def cost_lines(cost: dict) -> list[str]:
    """Training cost; cost.json written before the cost meter lacks these keys, so all are optional."""
    if "flops" not in cost:
        return []
    usd = cost.get("usd")
    flops = cost["flops"]
    energy = cost.get("energy_kwh")
    return [
        "## Cost",
        "",
        f"- training: {cost['device_hours']:.3g} device-hours"
        + (f", **{usd_text(usd)}**" if usd is not None else ", dollars unknown (no price)"),
        f"- price: {_price_text(cost.get('price'))}",
        f"- compute: {_si(flops['train'])}FLOP estimated ({flops['trainable_params']:,} trainable and "
        f"{flops['frozen_params']:,} frozen weights, embeddings apart), {_si(flops['achieved_flops_per_s'])}"
        "FLOP/s achieved" + (f" ({flops['share_of_peak']:.0%} of the peak: {flops['peak_basis']})"
                             if flops.get("share_of_peak") is not None else ""),
        f"- energy: {f'{energy:.4g} kWh (NVML)' if energy is not None else 'not metered on this device'}",
        f"- peak memory: host {cost['peak_host_rss_mib']:.0f} MiB"
        + (f", device {cost['peak_device_mib']:.0f} MiB" if cost.get("peak_device_mib") is not None else ""),
        "",
    ]


def inference_lines(run_dir: Path) -> list[str]:
    path = run_dir / "inference.json"
    if not path.is_file():
        return ["Serving cost: run `paretune bench-infer` on this folder.", ""]
    bench = json.loads(path.read_text(encoding="utf-8"))
    latency, usd = bench["latency_ms"], bench.get("usd_per_million")
    return [
        "## Serving cost",
        "",
        f"Measured {bench['measured_at']} on {device_text(bench)} ({bench.get('threads', '?')} threads):",
        "",
        f"- latency at batch 1: p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms, "
        f"p99 {latency['p99']:.2f} ms",
        f"- throughput: {bench['throughput_per_s']:.1f} predictions/s at batch {bench['throughput_batch_size']}",
        f"- model size {bench['size_mib']:.1f} MiB, peak memory {bench['peak_memory_mib']:.0f} MiB",
        f"- **{usd_text(usd)} per million predictions**" if usd is not None else "- dollars unknown (no price)",
        f"- price: {_price_text(bench.get('price'))}",
        "",
    ]


def usd_text(value: float) -> str:
    """Dollars with three significant digits, never in e-notation: $1,234.57, $0.0968, $0.0000968."""
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.{2 - math.floor(math.log10(value))}f}"


def _si(value: float) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "

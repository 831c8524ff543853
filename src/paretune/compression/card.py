"""README.md of a compressed or distilled run: what was done to which parent, and what it changed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from paretune.run_folder import RunFolder
from paretune.run_replace import STAGING_SUFFIX
from paretune.stored import FORMS



def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def _row(label: str, key: str, change: dict, ratio: str | None, digits: int = 4) -> str:
    before, after = change["parent"].get(key), change["value"].get(key)
    shown = f"{change[ratio]:.3g}x" if ratio and change.get(ratio) is not None else "-"
    if key == change["metric"] and change.get("metric_delta") is not None:
        shown = f"{change['metric_delta'] * 100:+.2f} points" if abs(after or 0) <= 1 else f"{change['metric_delta']:+.4g}"
    return f"| {label} | {_number(before, digits)} | {_number(after, digits)} | {shown} |"


def _generation_rows(change: dict) -> list[str]:
    """A generative run's serving in generated tokens (bench-infer's engine figures)."""
    return [_row("generated tokens/s, batched", "tokens_per_s", change, "tokens_per_s_ratio", 1),
            _row("time to first token (ms)", "time_to_first_token_ms", change, None, 1),
            _row("$ per million generated tokens", "usd_per_million_tokens", change, None, 4)]


def card_lines(run: RunFolder) -> list[str]:
    metrics = run.read_json("metrics.json")
    entry = metrics["compression"]
    change = entry["change"]
    form = entry.get("form", {}).get("name", "pytorch")
    settings = ", ".join(f"{k}={v}" for k, v in entry.get("settings", {}).items() if not isinstance(v, (dict, list)))
    checks = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in entry.get("checks", {}).items() if not isinstance(v, (dict, list)))
    cost = run.read_json("cost.json") if (run.path / "cost.json").is_file() else {}
    usd = cost.get("usd")
    name = run.path.name.removesuffix(STAGING_SUFFIX)  # written in the staging folder, read once swapped in
    return [
        f"# {name}",
        "",
        # By folder name: the card travels with the run, the parent's absolute path does not.
        f"**{entry['method']}** of run `{Path(entry['parent']).name}`" + (f" ({settings})" if settings else "") + ".",
        "",
        "| | parent | this run | change |",
        "| --- | --- | --- | --- |",
        _row(f"validation {change['metric']}", change["metric"], change, None),
        *([_row("validation perplexity", "perplexity", change, None)]
          if change["metric"] != "perplexity" and "perplexity" in change["value"] else []),
        _row("size on disk (MiB)", "size_mib", change, "size_ratio", 1),
        _row("latency p50, batch 1 (ms)", "latency_p50_ms", change, "latency_ratio", 2),
        _row("throughput (predictions/s)", "throughput_per_s", change, "throughput_ratio", 1),
        *(_generation_rows(change) if "tokens_per_s" in change["value"] else []),
        "",
        f"Measured {entry.get('measured_at', '?')}, parent and this run one after the other on the same "
        "machine through `Predictor` (see `inference.json` for the device).",
        *([f"Checks: {checks}."] if checks else []),
        *([f"Answer agreement with the parent: {100 * change['answer_agreement']:.1f}% of validation answers "
           "identical."] if isinstance(change.get("answer_agreement"), (int, float)) else []),
        *[f"**Warning**: {warning}." for warning in change.get("warnings") or []],
        "",
        f"- stored form: {form}; " + (FORMS[form].use if form in FORMS else "plain transformers weights"),
        f"- cost to make, parent included: {cost.get('device_hours', 0):.4f} device-hours"
        + (f", ${usd:.4g}" if isinstance(usd, (int, float)) else "")
        + f" (this step {(cost.get('step') or {}).get('wall_s', 0):.1f} s)",
        "",
        "## Use",
        "",
        "```python",
        "from paretune import Predictor",
        f"predictor = Predictor.load('{name}')  # from the folder that holds it",
        "predictor.predict(['some text'])",
        "```",
        "",
        "Files: `config.yaml`, `metrics.json` (with the `compression` entry), `cost.json`, `inference.json`, "
        "`environment.json`, `data.json`, `model/`.",
        "",
    ]


def write_compression_card(run: RunFolder) -> None:
    (run.path / "README.md").write_text("\n".join(card_lines(run)), encoding="utf-8")

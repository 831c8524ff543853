"""`paretune plan CONFIG [--methods full,lora] [--devices cpu,a100,h100] [--rows N] [--context-memory MIB] [--json]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def plan(
    config: Path = typer.Argument(..., help="YAML config file of the run to plan."),
    methods: Optional[str] = typer.Option(
        None, "--methods", help="Comma-separated methods to compare; default the config's method."),
    devices: str = typer.Option("cpu,a10g,a100,h100,h200", "--devices",
                                help="Comma-separated devices: cpu, t4, l4, a10g, a100, h100, h200."),
    rows: Optional[int] = typer.Option(None, "--rows", min=1, help="Plan for the first N training rows "
                                       "(sets data.max_train_rows)."),
    steps: int = typer.Option(10, "--steps", min=2, help="Timed training steps per method on this machine."),
    context_memory: Optional[float] = typer.Option(
        None, "--context-memory", min=1, metavar="MIB", help="Size the largest trainable context (max ctx) for "
        "this much memory in MiB instead of each device's."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a config key."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON on the last line."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too (to stderr)."),
) -> None:
    """Estimate peak memory, time and dollars of a run per method and device, before training, and the
    longest sequence a training step fits in each device's memory."""
    import json

    from paretune.config import load_config
    from paretune.cost.calibrate import plan_run
    from paretune.logs import setup_logging

    setup_logging(verbose)
    overrides = [*set_, *([] if rows is None else [f"data.max_train_rows={rows}"])]
    loaded = load_config(config, overrides)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else [loaded.method.name]
    planned = plan_run(loaded, chosen, [d.strip().lower() for d in devices.split(",") if d.strip()], steps,
                       context_memory)
    print(plan_table(planned))
    if as_json:
        print(json.dumps({f"{r['method']}/{r['device']}": {k: r.get(k) for k in
                          ("time_s", "peak_memory_mib", "usd", "fits", "basis", "how", "train_s", "epoch_s", "memory",
                           "max_context")}
                          for r in planned}))


def plan_table(planned: list[dict]) -> str:
    from paretune.frontier.table import fmt_time, fmt_usd

    header = ("method", "device", "basis", "per epoch", "run", "peak MiB", "fits", "usd", "max ctx")
    lines = [header]
    for r in planned:
        known = r.get("time_s") is not None
        lines.append((r["method"], r["device"], r["basis"], fmt_time(r.get("epoch_s")) if known else "-",
                      fmt_time(r["time_s"]) if known else "-",
                      f"{r['peak_memory_mib']:,.0f}" if known else "-",
                      {True: "yes", False: "NO", None: "-"}[r.get("fits")], fmt_usd(r.get("usd")),
                      _context_cell(r.get("max_context"))))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)
    return table + ("\nmeasured: steps timed and peak memory measured on this machine.\n"
                    "scaled: not calibrated on that device; time is the FLOP model over its published "
                    "peak TFLOP/s x an assumed efficiency, memory is counted (cost/hardware.py, docs/cost.md).\n"
                    "max ctx: the longest sequence (tokens, x rows per batch) whose training step fits the device's "
                    "memory; + when the model's position table is the limit (cost/context.py).")


def _context_cell(context: dict | None) -> str:
    if not context:
        return "-"
    rows = f" x{context['rows']}" if context["rows"] > 1 else ""
    return f"{context['tokens']:,}{rows}" + ("+" if context["limit"] == "model positions" else "")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)

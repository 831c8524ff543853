"""`paretune plan CONFIG [--methods full,lora] [--devices cpu,a100,h100] [--rows N] [--json]`."""
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
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a config key."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON on the last line."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too (to stderr)."),
) -> None:
    """Estimate peak memory, time and dollars of a run per method and device, before training."""
    import json

    from paretune.config import load_config
    from paretune.cost.calibrate import plan_run
    from paretune.logs import setup_logging

    setup_logging(verbose)
    overrides = [*set_, *([] if rows is None else [f"data.max_train_rows={rows}"])]
    loaded = load_config(config, overrides)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else [loaded.method.name]
    planned = plan_run(loaded, chosen, [d.strip().lower() for d in devices.split(",") if d.strip()], steps)
    print(plan_table(planned))
    if as_json:
        print(json.dumps({f"{r['method']}/{r['device']}": {k: r.get(k) for k in
                          ("time_s", "peak_memory_mib", "usd", "fits", "basis", "how", "train_s", "epoch_s", "memory")}
                          for r in planned}))


def plan_table(planned: list[dict]) -> str:
    from paretune.frontier.table import fmt_time, fmt_usd

    header = ("method", "device", "basis", "per epoch", "run", "peak MiB", "fits", "usd")
    lines = [header]
    for r in planned:
        known = r.get("time_s") is not None
        lines.append((r["method"], r["device"], r["basis"], fmt_time(r.get("epoch_s")) if known else "-",
                      fmt_time(r["time_s"]) if known else "-",
                      f"{r['peak_memory_mib']:,.0f}" if known else "-",
                      {True: "yes", False: "NO", None: "-"}[r.get("fits")], fmt_usd(r.get("usd"))))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)
    return table + ("\nmeasured: steps timed and peak memory measured on this machine.\n"
                    "scaled: not calibrated on that device; time is the FLOP model over its published "
                    "peak TFLOP/s x an assumed efficiency, memory is counted (cost/hardware.py, docs/cost.md).")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)

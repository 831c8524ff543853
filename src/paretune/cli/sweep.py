"""`paretune sweep SWEEP.yaml [--backend local|ray] [--address ADDR] [--dir DIR] [--dry-run]`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def sweep(
    sweep_file: Path = typer.Argument(..., help="Sweep file: base config, variants, grid, search."),
    backend: str = typer.Option("local", "--backend", "-b", help="local (one variant at a time) or ray."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (auto, ray://host:10001)."),
    folder: Optional[Path] = typer.Option(None, "--dir", help="Sweep folder; default the file's `dir`."),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", help="Ray: trials at once."),
    reclaim: bool = typer.Option(False, "--reclaim", help="Take over variants marked running by "
                                 "workers on other machines (when those workers are gone)."),
    track: list[str] = typer.Option([], "--track", help="Log every variant to this tracking backend "
                                    "(tensorboard, mlflow, wandb); repeatable (docs/tracking.md)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every variant's config and list them."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too (to stderr)."),
) -> None:
    """Train every variant of a sweep file as its own run folder; resumable, failures recorded."""
    from paretune.logs import setup_logging
    from paretune.sweep import load_sweep, run_sweep

    setup_logging(verbose)
    loaded = load_sweep(sweep_file, folder)
    if dry_run:
        variants = loaded.variants()
        loaded.check_configs(variants)
        for variant in variants:
            print(f"{variant.name}\t{' '.join(variant.override_strings()) or '(base config)'}")
        search = loaded.spec.search
        extra = f" and {search.n_trials} search trials" if search else ""
        print(f"{len(variants)} variants{extra}, all configs valid; folder {loaded.folder}")
        return
    result = run_sweep(loaded, backend, address=address, reclaim=reclaim, max_concurrent=max_concurrent,
                       track=track)
    print(summary_table(result))
    failed = result.count("failed")
    print(f"{result.count('finished')} finished, {failed} failed, sweep folder {result.folder}\n"
          f"compare them: paretune frontier {result.folder}")
    if failed:
        sys.exit(1)


def summary_table(result) -> str:
    rows = [("variant", "status", "metric", "seconds", "error")]
    for name in result.names:
        record = result.records.get(name, {})
        value = record.get("value")
        metric = f"{record.get('metric')} {value:.4f}" if isinstance(value, (int, float)) else ""
        seconds = f"{record['seconds']:.1f}" if isinstance(record.get("seconds"), (int, float)) else ""
        error = (record.get("error") or "").splitlines()[0][:80] if record.get("error") else ""
        rows.append((name, record.get("status", "pending"), metric, seconds, error))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)

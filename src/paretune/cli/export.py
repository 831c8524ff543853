"""`paretune export RUN [--merge] [--output DIR]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export(
    run: Path = typer.Argument(..., help="Finished run folder written by paretune train."),
    merge: bool = typer.Option(
        False, "--merge",
        help="Write a full model with the adapter folded into its weights; it loads with plain "
             "transformers, no peft needed (LoRA, AdaLoRA, IA3, and full/freeze runs).",
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Folder to write; default RUN/export/adapter or RUN/export/merged."
    ),
) -> None:
    """Copy out a run's adapter alone (small; loads over the base model with peft) or a merged model."""
    from paretune.export import export_run

    folder = export_run(run, merge, output)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"wrote {'merged model' if merge else 'adapter'} to {folder} ({size / 2**20:.2f} MiB)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)

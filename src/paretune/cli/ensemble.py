"""`paretune ensemble RUN... --method average|weighted|vote|stacking --output DIR`."""
from __future__ import annotations

from pathlib import Path

import typer

from paretune.remote_code import FLAG_HELP


def ensemble(
    runs: list[Path] = typer.Argument(..., help="Finished run folders on the same task and labels (any methods, "
                                                  "base models or stored forms)."),
    method: str = typer.Option("average", "--method", "-m",
                               help="average | weighted (weights fitted on validation) | vote | stacking "
                                    "(logistic regression on out-of-fold validation predictions)."),
    output: Path = typer.Option(..., "--output", "-o", help="The ensemble's run folder."),
    validation: Path = typer.Option(None, "--validation",
                                    help="Fit weights or the stacking meta-model on this file (same columns as the "
                                         "runs' data) instead of the first run's validation rows; the "
                                         "new run records it as its validation file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder at --output."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the ensemble's metrics as JSON on the last line."),
) -> None:
    """Combine the predictions of finished runs into one run folder (docs/combining.md)."""
    from paretune.cli.output import print_metrics
    from paretune.combine.ensemble import build_ensemble
    from paretune.logs import setup_logging
    from paretune.run_folder import RunFolder

    setup_logging()
    path = build_ensemble(runs, method, output, overwrite=overwrite, trust_remote_code=trust_remote_code,
                          validation=validation)
    print_metrics(RunFolder.open(path).read_json("metrics.json")["validation"], f"{path} (validation)", as_json)


def register(app: typer.Typer) -> None:
    app.command("ensemble")(ensemble)

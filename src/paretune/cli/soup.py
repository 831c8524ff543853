"""`paretune soup RUN... --uniform|--greedy [--merge average|ties|dare_linear] --output DIR`."""
from __future__ import annotations

from pathlib import Path

import typer

from paretune.remote_code import FLAG_HELP


def soup(
    runs: list[Path] = typer.Argument(..., help="Finished runs fine-tuned from the same base model."),
    greedy: bool = typer.Option(False, "--greedy/--uniform",
                                help="--uniform averages every run; --greedy adds runs (best first) only "
                                     "while the validation score improves."),
    merge: str = typer.Option("average", "--merge",
                              help="average (of the weights) | ties | dare_linear (peft's merge of LoRA adapters)."),
    output: Path = typer.Option(..., "--output", "-o", help="The soup's run folder."),
    validation: Path = typer.Option(None, "--validation",
                                    help="Fit the greedy soup's choice on this file (same columns as the "
                                         "runs' data) instead of the first run's validation rows; the "
                                         "new run records it as its validation file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder at --output."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the soup's metrics as JSON on the last line."),
) -> None:
    """Average the weights of runs fine-tuned from one base into one model (docs/combining.md)."""
    from paretune.cli.output import print_metrics
    from paretune.combine.soup import build_soup
    from paretune.logs import setup_logging
    from paretune.run_folder import RunFolder

    setup_logging()
    path = build_soup(runs, "greedy" if greedy else "uniform", output, merge=merge, overwrite=overwrite,
                      trust_remote_code=trust_remote_code, validation=validation)
    print_metrics(RunFolder.open(path).read_json("metrics.json")["validation"], f"{path} (validation)", as_json)


def register(app: typer.Typer) -> None:
    app.command("soup")(soup)

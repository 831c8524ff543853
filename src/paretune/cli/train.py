"""`paretune train CONFIG [--set key=value ...] [--resume RUN] [--json]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.errors import ParetuneError


def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config file."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a key, e.g. --set training.lr=3e-5"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this killed run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print final metrics as JSON on the last line."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fine-tune a model as the config says and write a run folder."""
    from paretune.cli import setup_logging
    from paretune.cli.output import print_metrics

    setup_logging(verbose)
    import paretune

    if resume is not None:
        if config is not None or set_:
            raise ParetuneError("--resume continues with the run's saved config; drop CONFIG and --set")
        run = paretune.resume(resume)
    elif config is None and not set_:
        raise ParetuneError("give a config file (paretune train examples/sentiment.yaml) or --resume RUN")
    elif config is None:
        from paretune.config import load_config

        run = paretune.finetune(load_config(None, set_))
    else:
        run = paretune.finetune(config, overrides=set_)
    if as_json:
        print_metrics({"run": str(run.path), **run.metrics}, f"final metrics ({run.path})", as_json=True)
        return
    for split in ("validation", "test"):
        if split in run.metrics:
            print_metrics(run.metrics[split], f"{split} ({run.path})", as_json=False)
    print(f"run folder: {run.path}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)

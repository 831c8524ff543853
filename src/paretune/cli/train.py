"""`paretune train CONFIG [--set key=value ...] [--resume RUN] [--nproc N] [--json]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.errors import ParetuneError


def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config file."),
    set_: list[str] = typer.Option(
        [], "--set", "-s", metavar="KEY=VALUE", help="Override a key, e.g. --set training.lr=3e-5"
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this killed run folder."),
    from_run: Optional[Path] = typer.Option(
        None, "--from", help="Continue this finished run on the config's data, keeping its head and labels "
        "(continual learning: the config's continual: section, docs/continual.md)."),
    price: Optional[str] = typer.Option(
        None, "--price", help="Price table row (e.g. lambda-h100-sxm) or dollars per device-hour (e.g. 2.5)."
    ),
    nproc: Optional[int] = typer.Option(
        None, "--nproc", min=1, help="Train on N processes on this machine, one per GPU (docs/distributed.md)."
    ),
    track: list[str] = typer.Option([], "--track", help="Log to this tracking backend (tensorboard, mlflow, "
                                    "wandb); repeatable; sets tracking.backends (docs/tracking.md)."),
    as_json: bool = typer.Option(False, "--json", help="Print final metrics as JSON on the last line."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too (to stderr)."),
) -> None:
    """Fine-tune a model as the config says and write a run folder."""
    from paretune.cli.output import print_metrics
    from paretune.logs import setup_logging

    setup_logging(verbose)
    if price is not None:
        set_ = [*set_, *price_overrides(price)]
    if track:
        set_ = [*set_, f"tracking.backends=[{', '.join(track)}]"]
    if nproc is not None:
        _check_not_launched()
    if resume is not None and (config is not None or set_):
        raise ParetuneError("--resume continues with the run's saved config; drop CONFIG, --set and --price")
    if resume is None and config is None and not set_:
        raise ParetuneError("give a config file (paretune train examples/sentiment.yaml) or --resume RUN")
    overrides = [*set_, *([] if nproc is None else [f"distributed.nproc={nproc}"])]
    if from_run is not None:
        if config is None or resume is not None:
            raise ParetuneError("--from RUN needs a config with the new data (and cannot be used with --resume)")
        from paretune.continual.run import continue_from

        run = continue_from(from_run, config, overrides)
    else:
        run = _run(config, overrides, resume, nproc)  # on several processes when the run asks for them
    run_path, metrics = run.path, run.metrics
    if as_json:
        print_metrics({"run": str(run_path), **metrics}, f"final metrics ({run_path})", as_json=True)
        return
    for split in ("validation", "test"):
        if split in metrics:
            print_metrics(metrics[split], f"{split} ({run_path})", as_json=False)
    from paretune.run_folder import human_size

    size = metrics.get("run_folder_bytes")
    print(f"run folder: {run_path}" + (f" ({human_size(size)})" if size is not None else ""))


def _run(config: Path | None, overrides: list[str], resume: Path | None, nproc: int | None):
    import paretune

    if resume is not None:
        return paretune.resume(resume, nproc=nproc)
    if config is None:
        from paretune.config import load_config

        return paretune.finetune(load_config(None, overrides))
    return paretune.finetune(config, overrides=overrides)  # the YAML is read once, in there


def _check_not_launched() -> None:
    from paretune.distributed.launch import launched

    if launched():
        raise ParetuneError("--nproc starts processes itself, but torchrun or accelerate launch already "
                            "started this one: drop --nproc (the launcher's process count is used)")


def price_overrides(price: str) -> list[str]:
    """`--price` as config overrides: a number sets cost.usd_per_hour, a name cost.price."""
    from paretune.cost.prices import parse_price_option

    value = parse_price_option(price)
    if isinstance(value, float):
        return [f"cost.usd_per_hour={value}", "cost.price="]
    return [f"cost.price={value}", "cost.usd_per_hour="]


def register(app: typer.Typer) -> None:
    app.command("train")(train)

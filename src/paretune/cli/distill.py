"""`paretune distill --teacher RUN --student MODEL|teacher:layers=SPEC [options] [--json]`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from paretune.cli.settings_options import settings_options
from paretune.distillation.options import DistillOptions
from paretune.remote_code import FLAG_HELP


@settings_options(DistillOptions)
def distill(
    teacher: Path = typer.Option(..., "--teacher", "-t", help="Finished run whose model teaches."),
    student: str = typer.Option(
        ..., "--student", help="A model folder or hub id with the teacher's vocabulary (images: size, mean, std), or "
        "teacher:layers=0,2,4 (also first:N, every:K) for a copy of some of the teacher's blocks."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="New run folder; default TEACHER-distilled."),
    set_: list[str] = typer.Option(
        [], "--set", "-s", metavar="KEY=VALUE", help="Training override, e.g. --set training.lr=1e-4"
    ),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time teacher and student (bench-infer)."),
    bench_seconds: float = typer.Option(20.0, help="Rough time limit of each run's timing."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the compression entry as JSON on the last line."),
    settings: dict = None,
) -> None:
    """Train a smaller student against a finished run's model (knowledge distillation)."""
    from pydantic import ValidationError

    from paretune.cli.compress import summary
    from paretune.compression.run_writer import BenchSettings
    from paretune.distillation.run import distill_run
    from paretune.errors import ParetuneError
    from paretune.logs import setup_logging
    from paretune.validation import validation_problems

    setup_logging()
    try:
        options = DistillOptions(**settings)
    except ValidationError as err:
        raise ParetuneError("distill: " + "; ".join(message for _, message in validation_problems(err))) from None
    folder = distill_run(teacher, student, options, output=output, overrides=set_,
                         bench=BenchSettings(enabled=bench, max_seconds=bench_seconds), overwrite=overwrite,
                         trust_remote_code=trust_remote_code)
    metrics = json.loads((folder / "metrics.json").read_text())
    if as_json:
        print(json.dumps({"run": str(folder), **metrics["compression"]}))
        return
    print(summary(folder, metrics))


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)

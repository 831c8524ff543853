"""`paretune eval RUN --data FILE [--json]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.remote_code import FLAG_HELP


def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by paretune train."),
    data: Path = typer.Option(..., "--data", "-d", help="Labelled file (csv, tsv, jsonl, parquet, conll)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Data format if the extension does not say."),
    text_column: Optional[str] = typer.Option(None, help="Defaults to the run's data.text_column."),
    label_column: Optional[str] = typer.Option(None, help="Defaults to the run's data.label_column."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON on the last line."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Generative runs: also score the answers by "
                                         "regex:PATTERN, json:FIELD or json-list (instead of the run's task.match)."),
) -> None:
    """Evaluate a trained run on a labelled file."""
    from paretune.cli.output import print_metrics
    from paretune.logs import setup_logging
    from paretune.predictor import Predictor

    setup_logging()
    predictor = Predictor.load(run, trust_remote_code=trust_remote_code)
    if metric:
        _set_match(predictor, metric)
    metrics = predictor.evaluate(data, fmt=fmt, text_column=text_column, label_column=label_column)
    print_metrics(metrics, f"{data}", as_json)


def _set_match(predictor, metric: str) -> None:
    from paretune.errors import ParetuneError

    if not predictor.task.generates:
        raise ParetuneError(f"--metric {metric} scores generated answers; this run's task "
                            f"({predictor.task.name}) does not generate")
    try:
        predictor.task.config.match = metric  # checked by the task's options
    except ValueError as error:  # pydantic's ValidationError, one problem
        message = error.errors()[0]["msg"] if hasattr(error, "errors") else str(error)
        raise ParetuneError(f"--metric: {message.removeprefix('Value error, ')}") from None


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)

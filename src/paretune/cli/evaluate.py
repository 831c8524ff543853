"""`paretune eval RUN --data FILE [--json]`; `paretune eval RUN --lm-eval TASKS` (lm-evaluation-harness
on the run's model, local task YAML files: evaluation/lm_eval_run.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.remote_code import FLAG_HELP


def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by paretune train."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labelled file (csv, tsv, jsonl, parquet, conll)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Data format if the extension does not say."),
    text_column: Optional[str] = typer.Option(None, help="Defaults to the run's data.text_column."),
    label_column: Optional[str] = typer.Option(None, help="Defaults to the run's data.label_column."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON on the last line."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Generative runs: also score the answers by "
                                         "regex:PATTERN, json:FIELD or json-list (instead of the run's task.match)."),
    lm_eval: Optional[str] = typer.Option(None, "--lm-eval", help="Generative runs: lm-evaluation-harness tasks, "
                                          "comma-separated: shipped task names (paretune_capitals), task YAML "
                                          "files or folders of them (local data only; docs/generation.md)."),
    lm_eval_limit: Optional[int] = typer.Option(None, "--lm-eval-limit", min=1, help="First N rows of each task."),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", min=0, help="lm-eval few-shot examples."),
    device: Optional[str] = typer.Option(None, "--device", help="lm-eval device (default: cuda when present)."),
) -> None:
    """Evaluate a trained run on a labelled file, or on lm-evaluation-harness tasks (--lm-eval)."""
    from paretune.cli.output import print_metrics
    from paretune.errors import ParetuneError
    from paretune.logs import setup_logging
    from paretune.predictor import Predictor

    setup_logging()
    if (data is None) == (lm_eval is None):
        raise ParetuneError("paretune eval takes --data FILE (a labelled file) or --lm-eval TASKS, one of them")
    if lm_eval:
        scores = _run_lm_eval(run, lm_eval, lm_eval_limit, num_fewshot, device, trust_remote_code)
        flat = {f"{task}/{name}": value for task, values in scores.items() for name, value in values.items()}
        print_metrics(flat, f"lm-eval {lm_eval}", as_json)
        return
    predictor = Predictor.load(run, trust_remote_code=trust_remote_code)
    if metric:
        _set_match(predictor, metric)
    metrics = predictor.evaluate(data, fmt=fmt, text_column=text_column, label_column=label_column)
    print_metrics(metrics, f"{data}", as_json)


def _run_lm_eval(run: Path, tasks: str, limit: int | None, num_fewshot: int | None, device: str | None,
                 trust_remote_code: bool) -> dict:
    """The run's model/ folder goes to lm-eval by path when transformers loads it alone (what the
    `lm_eval` command would load); other stored forms are loaded by paretune and passed in."""
    import torch

    from paretune.errors import ParetuneError
    from paretune.evaluation.lm_eval_run import run_lm_eval
    from paretune.predictor import Predictor
    from paretune.run_folder import RunFolder
    from paretune.stored import form_of
    from paretune.tasks import task_class

    folder = RunFolder.open(run)
    config = folder.read_config()
    if not task_class(config.task.type).generates:
        raise ParetuneError(f"--lm-eval scores language models; this run's task ({config.task.type}) "
                            "is not generative")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = {"device": device, "limit": limit, "num_fewshot": num_fewshot}
    if form_of(folder.model_dir).plain_transformers and not config.model.trust_remote_code:
        return run_lm_eval(folder.model_dir, tasks, **options)
    predictor = Predictor.load(run, device=device, trust_remote_code=trust_remote_code)
    return run_lm_eval(predictor.model, tasks, tokenizer=predictor.tokenizer, **options)


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

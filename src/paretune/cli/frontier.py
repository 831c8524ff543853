"""`paretune frontier SWEEP_DIR|RUN... [--min-metric X] [--budget USD] [--max-latency-ms MS] ...`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def frontier(
    paths: list[Path] = typer.Argument(..., help="Sweep folders, run folders, or folders of runs."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Quality metric; default the runs' main one."),
    split: str = typer.Option("validation", "--split", help="Split whose metric is compared (validation, test)."),
    min_metric: Optional[float] = typer.Option(None, "--min-metric", help="Cheapest variant reaching this."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Best variant whose training costs <= USD."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Only variants with p50 <= MS."),
    train_rows: Optional[float] = typer.Option(None, "--train-rows", help="Project training cost to N rows."),
    predictions_per_month: Optional[float] = typer.Option(
        None, "--predictions-per-month", help="Project serving cost to N predictions a month."),
    price: Optional[str] = typer.Option(None, "--price", help="Price-table name or USD per device-hour, "
                                        "replacing the runs' own prices."),
    bench_missing: bool = typer.Option(False, "--bench-missing", help="Benchmark inference of finished "
                                       "runs that have no inference.json first."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for frontier.md/.png/.json; "
                                          "default the first folder given."),
    as_json: bool = typer.Option(False, "--json", help="Print the frontier as JSON on stdout."),
) -> None:
    """Compare runs on quality, training cost and serving cost; mark the Pareto-optimal ones.

    Runs that rank by different metrics (a classifier's accuracy, a chat run's exact match) are
    shown as one table and picture per task and metric, unless --metric names one for all."""
    from paretune.frontier import Questions, Scale, build_groups, to_markdown, write
    from paretune.logs import setup_logging

    setup_logging()
    frontiers = build_groups(
        paths, metric=metric, split=split, price=price, bench_missing=bench_missing,
        questions=Questions(min_metric=min_metric, budget=budget, max_latency_ms=max_latency_ms),
        scale=Scale(train_rows=train_rows, predictions_per_month=predictions_per_month),
    )
    first = paths[0]
    # Beside the runs: in the sweep folder, or in the folder that holds a single run.
    folder = output or (first.parent if (first / "config.yaml").is_file() else first)
    written = [write(frontier, folder) for frontier in frontiers]
    if as_json:
        from paretune.frontier.report import to_json

        shown = [to_json(frontier) for frontier in frontiers]
        print(json.dumps(shown[0] if len(shown) == 1 else {"groups": shown}, default=str))
        return
    if len(frontiers) > 1:
        print(f"The runs rank by {len(frontiers)} different metrics: one frontier each "
              f"({'; '.join(f.group for f in frontiers)}). --metric NAME ranks them all by one.\n")
    for frontier, files in zip(frontiers, written):
        print(to_markdown(frontier, image=None))
        print(f"wrote {files['md']}, {files['png']} and {files['json']}\n")


def register(app: typer.Typer) -> None:
    app.command("frontier")(frontier)

"""`paretune predict RUN --input FILE --output FILE.jsonl [--restart]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.remote_code import FLAG_HELP


def predict(
    run: Path = typer.Argument(..., help="Run folder written by paretune train."),
    input: Path = typer.Option(..., "--input", "-i", help="Texts to label (csv, tsv, jsonl, parquet, conll); "
                               "images: a folder, a list file (.txt) or a table with an image column."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write predictions (JSON lines)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Input format if the extension does not say."),
    text_column: Optional[str] = typer.Option(None, help="Defaults to the run's data.text_column."),
    all_scores: bool = typer.Option(False, "--all-scores", help="Include every label's score."),
    batch_size: int = typer.Option(64, help="Examples per forward pass."),
    chunk_rows: int = typer.Option(512, min=1, help="Rows read, predicted and written at a time."),
    restart: bool = typer.Option(False, "--restart", help="Ignore a partial output left by an earlier run."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace OUTPUT even if it exists and is not an earlier prediction file."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
) -> None:
    """Label every row of a file with a trained run; one JSON object per input row.

    Streams: memory stays flat however large the file. An interrupted job continues where it
    stopped when run again with the same arguments; OUTPUT appears only once every row is done.
    """
    from paretune.batch_predict import predict_file, predict_listed
    from paretune.logs import setup_logging
    from paretune.predictor import Predictor
    from paretune.run_folder import RunFolder

    setup_logging()
    config = RunFolder.open(run).read_config()
    predictor = Predictor.load(run, trust_remote_code=trust_remote_code)
    listed = predictor.task.read_prediction_inputs(input, config.task)  # images; None for text tables
    if listed is not None:
        result = predict_listed(predictor, listed, input, output, all_scores=all_scores, batch_size=batch_size,
                                overwrite=overwrite)
        print(f"wrote {result.rows} predictions to {result.output}")
        return
    result = predict_file(
        predictor, input, output, fmt=fmt, text_column=text_column or config.data.text_column,
        encoding=config.data.encoding, all_scores=all_scores, batch_size=batch_size,
        chunk_rows=chunk_rows, restart=restart, overwrite=overwrite,
    )
    resumed = f" ({result.resumed_after} were already done)" if result.resumed_after else ""
    print(f"wrote {result.rows} predictions to {result.output}{resumed}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)

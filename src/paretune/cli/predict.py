"""`paretune predict RUN --input FILE --output FILE.jsonl`."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from tqdm.auto import tqdm

CHUNK = 512


def predict(
    run: Path = typer.Argument(..., help="Run folder written by paretune train."),
    input: Path = typer.Option(..., "--input", "-i", help="Texts to label (csv, tsv, jsonl, parquet, conll)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write predictions (JSON lines)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Input format if the extension does not say."),
    text_column: Optional[str] = typer.Option(None, help="Defaults to the run's data.text_column."),
    all_scores: bool = typer.Option(False, "--all-scores", help="Include every label's score."),
    batch_size: int = typer.Option(64, help="Examples per forward pass."),
) -> None:
    """Label every row of a file with a trained run; one JSON object per input row."""
    from paretune.cli import setup_logging
    from paretune.data.readers import read_examples
    from paretune.predictor import Predictor
    from paretune.run_folder import RunFolder

    setup_logging()
    config = RunFolder.open(run).read_config()
    predictor = Predictor.load(run)
    examples = read_examples(
        input, fmt=fmt, text_column=text_column or config.data.text_column,
        label_column=config.data.label_column, word_level=predictor.task.word_level,
        require_labels=False, encoding=config.data.encoding,
    )
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as out, tqdm(total=len(examples), unit="row", disable=None) as bar:
        for start in range(0, len(examples), CHUNK):
            chunk = examples[start : start + CHUNK]
            for ex, pred in zip(chunk, predictor.predict_examples(chunk, all_scores, batch_size)):
                out.write(json.dumps({"row": ex.row, "text": ex.text, **pred}, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
    os.replace(tmp, output)
    print(f"wrote {len(examples)} predictions to {output}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)

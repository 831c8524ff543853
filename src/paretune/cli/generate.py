"""`paretune generate RUN --prompt TEXT` or `--input FILE --output FILE.jsonl`, with sampling options."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.errors import ParetuneError
from paretune.remote_code import FLAG_HELP


def generate(
    run: Path = typer.Argument(..., help="Run folder of a generative run (task.type: generation)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Answer this prompt; prints the answer."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Prompts to answer (jsonl, csv, parquet: "
                                         "prompt, instruction, messages or text)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write answers (JSON lines)."),
    max_new_tokens: int = typer.Option(128, min=1, help="Most tokens per answer (capped at the model's context)."),
    temperature: float = typer.Option(0.0, min=0.0, help="0: greedy; above 0: sample."),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0, help="Nucleus sampling: smallest token set with this mass."),
    top_k: int = typer.Option(0, min=0, help="Sample among the k likeliest tokens (0: all)."),
    stop: list[str] = typer.Option([], "--stop", help="Stop at this text (repeatable); it is not printed."),
    seed: int = typer.Option(0, help="Seed for sampling."),
    raw: bool = typer.Option(False, "--raw", help="Send the prompt as plain text, without the chat template."),
    system: Optional[str] = typer.Option(None, "--system", help="System message for --prompt (chat mode)."),
    batch_size: int = typer.Option(16, min=1, help="Prompts generated together (left-padded)."),
    restart: bool = typer.Option(False, "--restart", help="Ignore a partial output left by an earlier run."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace OUTPUT even if it exists and is not an earlier answers file."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
) -> None:
    """Answer a prompt, or every row of a file, with a trained generative run and its saved chat template."""
    from paretune.generate_text import answer, answer_file, capped, check_stop, prompt_example
    from paretune.logs import setup_logging
    from paretune.predictor import Predictor
    from paretune.tasks.decoding import DecodeSettings

    if (prompt is None) == (input is None) or (input is not None and output is None):
        raise ParetuneError("give --prompt TEXT, or --input FILE with --output FILE")
    check_stop(stop)  # before the model loads: a wrong flag costs no time
    setup_logging()
    predictor = Predictor.load(run, trust_remote_code=trust_remote_code)
    asked = DecodeSettings(max_new_tokens, temperature, top_p, top_k, list(stop), seed, batch_size)
    settings = capped(predictor, asked)  # no answer can outgrow the model's context
    if prompt is not None:
        print(answer(predictor, [prompt_example(prompt, raw, system)], settings)[0])
        return
    rows, done = answer_file(predictor, input, output, settings, restart=restart, overwrite=overwrite)
    resumed = f" ({done} were already done)" if done else ""
    print(f"wrote {rows} answers to {output}{resumed}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)

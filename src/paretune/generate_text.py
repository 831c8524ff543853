"""Answers from a trained generative run: one prompt, or every row of a file (`paretune generate`).

Prompts go through the task as in training: chat mode renders them with the run's saved chat
template (model/chat_template.jinja) and the generation prompt; raw mode sends the text as is.
A file is answered in chunks through the resumable writer shared with `paretune predict`
(resumable_output.py): an interrupted job run again continues after the last complete line, for
the same input, run and decoding settings only; one job at a time writes an output; OUTPUT
appears only when every row is done.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from paretune.data.examples import Example
from paretune.errors import ParetuneError
from paretune.predictor import Predictor
from paretune.resumable_output import ResumableOutput, check_output, exit_on_sigterm, input_stamp
from paretune.tasks.decoding import DecodeSettings

log = logging.getLogger("paretune")

# What the answers depend on: a partial written with other settings is started over (batch size,
# which only changes how prompts are grouped, is left out).
DECODE_STAMP = ("max_new_tokens", "temperature", "top_p", "top_k", "stop", "seed")


def prompt_example(text: str, raw: bool, system: str | None = None, row: int = 1) -> Example:
    if raw:
        return Example(text, None, row)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return Example(messages, None, row)


def answer(predictor: Predictor, examples: list[Example], settings: DecodeSettings) -> list[str]:
    task = predictor.task
    if not task.generates:
        raise ParetuneError(f"{predictor.run_dir} is a {task.name} run: generate answers generative runs only "
                            "(task.type: generation); use paretune predict")
    return task.answer(predictor.model, predictor.tokenizer, examples, predictor.device, settings)


def check_stop(stop: list[str]) -> None:
    """An empty stop string is found at every position: each answer would end at its first token."""
    if any(s == "" for s in stop):
        raise ParetuneError("--stop '': an empty stop string would cut every answer after its first token; "
                            "give the text to stop at, or leave --stop out")


def context_length(model) -> int | None:
    """The most positions the model takes (prompt and answer together), from its config."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def capped(predictor: Predictor, settings: DecodeSettings) -> DecodeSettings:
    """`settings` with max_new_tokens no larger than the model's context, which no answer can pass."""
    context = context_length(predictor.model)
    if context is None or settings.max_new_tokens <= context:
        return settings
    log.warning("--max-new-tokens %d is more than the model's context of %d tokens "
                "(max_position_embeddings in model/config.json): capped at %d",
                settings.max_new_tokens, context, context)
    return replace(settings, max_new_tokens=context)


def answer_file(predictor: Predictor, input_path: Path, output: Path, settings: DecodeSettings,
                chunk_rows: int = 64, restart: bool = False, overwrite: bool = False) -> tuple[int, int]:
    """(rows answered, rows already done by an earlier, interrupted run of the same command)."""
    input_path, output = Path(input_path), Path(output)
    check_output(input_path, output, overwrite)
    examples = predictor.task.read_examples(input_path, predictor.task.config, require_labels=False)
    stamp = {**input_stamp(input_path), "run": str(Path(predictor.run_dir).resolve()),
             "decode": {name: getattr(settings, name) for name in DECODE_STAMP}}
    with ResumableOutput(output, stamp, rows=len(examples), restart=restart, row_of=lambda k: examples[k - 1].row,
                         command="paretune generate") as out, exit_on_sigterm(out.partial):
        for start in range(out.done, len(examples), chunk_rows):
            chunk = examples[start:start + chunk_rows]
            answers = answer(predictor, chunk, settings)
            out.write({"row": ex.row, "completion": text} for ex, text in zip(chunk, answers))
        out.finish()
        return len(examples), out.done

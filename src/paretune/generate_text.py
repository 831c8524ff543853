"""Answers from a trained generative run: one prompt, or every row of a file (`paretune generate`).

Prompts go through the task as in training: chat mode renders them with the run's saved chat
template (model/chat_template.jinja) and the generation prompt; raw mode sends the text as is.
A file is answered in chunks written to OUTPUT.partial as they finish, so an interrupted job run
again continues after the rows already written; OUTPUT appears only when every row is done.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from paretune.data.examples import Example
from paretune.errors import ParetuneError
from paretune.predictor import Predictor
from paretune.tasks.decoding import DecodeSettings


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


def answer_file(predictor: Predictor, input_path: Path, output: Path, settings: DecodeSettings,
                chunk_rows: int = 64, restart: bool = False) -> tuple[int, int]:
    """(rows answered, rows already done by an earlier, interrupted run)."""
    examples = predictor.task.read_examples(input_path, predictor.task.config, require_labels=False)
    partial = output.with_name(output.name + ".partial")
    done = 0
    if partial.is_file() and not restart:
        done = sum(1 for line in partial.read_text(encoding="utf-8").splitlines() if line.strip())
    elif partial.exists():
        partial.unlink()
    with open(partial, "a", encoding="utf-8") as out:
        for start in range(done, len(examples), chunk_rows):
            chunk = examples[start:start + chunk_rows]
            for ex, text in zip(chunk, answer(predictor, chunk, settings)):
                out.write(json.dumps({"row": ex.row, "completion": text}, ensure_ascii=False) + "\n")
            out.flush()
    os.replace(partial, output)
    return len(examples), done

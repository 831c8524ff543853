"""Rows of generative data (raw text, prompt/completion, instruction/output, chat) as Examples.

Every row becomes one of two shapes, whatever its file format (JSON lines, CSV, Parquet, saved
datasets):
- raw text (`text`): `Example.text` is the string, `label` None; every token is trained
  (continued pretraining);
- a conversation: `Example.text` is a list of `{"role", "content"}` messages, `label` the last
  assistant turn's content (what generation metrics compare with), or None for prediction input
  that ends with the user's turn.

The row's shape is read from its fields, so files need no column settings: `messages` (or
`conversations`, OpenAI roles or ShareGPT `from`/`value`), `prompt` + `completion`, `instruction`
(+ `input`) + `output`, else `text`. Every problem names its file, row and field, all at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from paretune.data.examples import Example
from paretune.data.readers import read_records
from paretune.data.rows import Record
from paretune.errors import DataError, DataProblem

# ShareGPT and other spellings of the three roles.
ROLE_NAMES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
              "model": "assistant", "bot": "assistant", "system": "system", "tool": "tool"}
CHAT_FIELDS = ("messages", "conversations")
SHAPES_HELP = ("messages (a list of {role, content}), prompt + completion, instruction (+ input) + output, "
               "or text")


def read_generation_examples(path: str | Path, *, fmt: str | None = None, require_labels: bool = True,
                             encoding: str = "utf-8", split: str | None = None, **_: Any) -> list[Example]:
    """Every row of `path` as an Example (module docstring), or one DataError listing all problems."""
    return read_row_examples(path, lambda record: row_example(record, require_labels), fmt, encoding, split)


def read_row_examples(path: str | Path, make_example, fmt: str | None, encoding: str,
                      split: str | None) -> list[Example]:
    """`make_example(record)` for every row of `path` (raising _RowProblem for a bad one), or one
    DataError listing every problem with its file, row, field and line."""
    name = str(path)
    _, records, problems = read_records(path, fmt, encoding, split)
    examples = []
    for record in records:
        try:
            examples.append(make_example(record))
        except _RowProblem as err:
            problems.append(DataProblem(name, err.message, row=record.row, field=err.field, line=record.line))
    if problems:
        raise DataError(sorted(problems, key=lambda p: (p.row or 0, p.line or 0)))
    if not examples:
        raise DataError(DataProblem(name, "holds no examples"))
    return examples


class _RowProblem(Exception):
    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def row_example(record: Record, require_labels: bool) -> Example:
    values = record.values
    chat_field = next((f for f in CHAT_FIELDS if _present(values.get(f))), None)
    if chat_field:
        messages = _messages(values[chat_field], chat_field, require_labels)
    elif _present(values.get("prompt")):
        messages = _prompt_messages(values, "prompt", "completion", require_labels)
    elif _present(values.get("instruction")):
        prompt = _text(values, "instruction")
        extra = values.get("input")
        if _present(extra):
            prompt = f"{prompt}\n\n{_text(values, 'input')}"
        messages = _prompt_messages({**values, "instruction": prompt}, "instruction", "output", require_labels)
    elif _present(values.get("text")):
        return Example(_text(values, "text"), None, record.row, record.line)
    else:
        found = ", ".join(values) or "none"
        raise _RowProblem(None, f"no generation fields (fields present: {found}); expected {SHAPES_HELP}")
    label = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
    if require_labels and not any(m["role"] == "assistant" for m in messages):
        raise _RowProblem(chat_field, "the conversation has no assistant turn to train on")
    return Example(messages, label, record.row, record.line)


def _present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):  # NaN from CSV/Parquet gaps
        return False
    return not (isinstance(value, str) and not value.strip())


def _text(values: dict, field: str) -> str:
    value = values.get(field)
    if not isinstance(value, str):
        raise _RowProblem(field, f"expected text, found {type(value).__name__}")
    return value


def _prompt_messages(values: dict, prompt_field: str, answer_field: str, require_labels: bool) -> list[dict]:
    prompt = values[prompt_field]
    messages = _messages(prompt, prompt_field, require_labels) if isinstance(prompt, list) else [
        {"role": "user", "content": _text(values, prompt_field)}]
    answer = values.get(answer_field)
    if not _present(answer):
        if require_labels:
            raise _RowProblem(answer_field, f"missing or empty '{answer_field}' (the text to train on)")
        return messages
    if isinstance(answer, list):  # TRL's conversational prompt/completion
        return messages + _messages(answer, answer_field, require_labels)
    return messages + [{"role": "assistant", "content": _text(values, answer_field)}]


def _messages(value: Any, field: str, require_labels: bool = True) -> list[dict[str, str]]:
    """The messages of a list; an assistant turn without text is refused (there is nothing to train
    on in it), except a last one in prediction input, which only marks where the answer goes."""
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise _RowProblem(field, f"expected a non-empty list of messages, found {type(value).__name__}")
    messages = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise _RowProblem(where, f"expected a message object, found {type(item).__name__}")
        role = item.get("role", item.get("from"))
        content = item.get("content", item.get("value"))
        if role not in ROLE_NAMES:
            raise _RowProblem(where, f"unknown role {role!r}; expected one of {', '.join(sorted(ROLE_NAMES))}")
        if not isinstance(content, str):
            raise _RowProblem(where, f"message content must be text, found {type(content).__name__}")
        if ROLE_NAMES[role] == "assistant" and not content.strip():
            if not require_labels and i == len(value) - 1:
                break
            raise _RowProblem(where, "empty assistant answer: give the text to train on, or drop the turn")
        messages.append({"role": ROLE_NAMES[role], "content": content})
    if not messages:
        raise _RowProblem(field, "holds only an empty assistant turn")
    return messages

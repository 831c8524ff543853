"""Rows of preference data (pairs, or KTO's unpaired answers) as Examples.

Every row becomes an Example whose `text` is the prompt, a list of `{"role", "content"}` messages
ending with the user's turn, and whose `label` holds the answers as assistant messages:

- a pair: `{"chosen": [...], "rejected": [...]}`, from `prompt` (text or messages) or `messages`
  (ending with the user's turn) + `chosen` + `rejected` (text or assistant messages: TRL's
  explicit-prompt convention), or from the implicit form, where `chosen` and `rejected` are whole
  conversations that share their beginning (the prompt);
- an unpaired answer (KTO): `{"completion": [...], "desirable": bool}`, from `prompt` +
  `completion` + a boolean `label`.

Which of the two a file must hold is the caller's (`kind`): a KTO run reads answers, the pair
losses read pairs. Every problem names its file, row and field, all at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from paretune.data.chat_rows import _messages, _present, _RowProblem, read_row_examples
from paretune.data.examples import Example
from paretune.data.rows import Record

PAIR_HELP = "prompt (or messages) + chosen + rejected, or chosen + rejected as whole conversations"
ANSWER_HELP = "prompt (or messages) + completion + label (true: a desirable answer, false: an undesirable one)"


def read_preference_examples(path: str | Path, *, kind: Literal["pairs", "answers"] = "pairs",
                             require_labels: bool = True, fmt: str | None = None, encoding: str = "utf-8",
                             split: str | None = None, **_: Any) -> list[Example]:
    """Every row of `path` as an Example (module docstring), or one DataError listing all problems.
    Without `require_labels` (prediction input), a row needs only its prompt."""
    return read_row_examples(path, lambda record: preference_example(record, kind, require_labels),
                             fmt, encoding, split)


def preference_example(record: Record, kind: str, require_labels: bool = True) -> Example:
    values = record.values
    if kind == "pairs" and not _present_any(values, "prompt", "messages") and require_labels:
        prompt, label = _implicit_pair(values)
        return Example(prompt, label, record.row, record.line)
    prompt = _prompt(values)
    if not require_labels:
        return Example(prompt, None, record.row, record.line)
    if kind == "answers":
        label = {"completion": _answer(values, "completion"), "desirable": _desirable(values)}
    else:
        label = {"chosen": _answer(values, "chosen"), "rejected": _answer(values, "rejected")}
        _check_different(label)
    return Example(prompt, label, record.row, record.line)


def answer_text(answer: list[dict]) -> str:
    """An answer's text (its assistant turns joined): what generation metrics compare with."""
    return "\n".join(m["content"] for m in answer)


def _present_any(values: dict, *fields: str) -> bool:
    return any(_present(values.get(f)) for f in fields)


def _prompt(values: dict) -> list[dict]:
    field = "messages" if _present(values.get("messages")) else "prompt"
    value = values.get(field)
    if not _present(value):
        raise _RowProblem("prompt", f"missing or empty 'prompt' (expected {PAIR_HELP} or {ANSWER_HELP})")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages = _messages(value, field)
    if messages[-1]["role"] == "assistant":
        raise _RowProblem(field, "the prompt ends with an assistant turn; it must end with the user's turn")
    return messages


def _answer(values: dict, field: str) -> list[dict]:
    value = values.get(field)
    if not _present(value):
        raise _RowProblem(field, f"missing or empty '{field}'")
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    messages = _messages(value, field)
    if any(m["role"] != "assistant" for m in messages):
        raise _RowProblem(field, f"'{field}' holds a non-assistant message; with a separate prompt it holds "
                                 "only the answer")
    return messages


def _desirable(values: dict) -> bool:
    value = values.get("label")
    if hasattr(value, "item"):  # numpy booleans from Parquet
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # CSV
        return value.strip().lower() == "true"
    raise _RowProblem("label", f"expected true or false (is the completion desirable?), found {value!r}")


def _check_different(label: dict) -> None:
    if label["chosen"] == label["rejected"]:
        raise _RowProblem("rejected", "'chosen' and 'rejected' are identical: the pair teaches nothing")


def _implicit_pair(values: dict) -> tuple[list[dict], dict]:
    """Whole conversations sharing a prefix: the prompt is what they share, the answers the rest."""
    for field in ("chosen", "rejected"):
        if not _present(values.get(field)):
            found = ", ".join(values) or "none"
            raise _RowProblem(field, f"missing '{field}' (fields present: {found}); expected {PAIR_HELP}")
        if isinstance(values[field], str):
            raise _RowProblem("prompt", f"'{field}' is text and there is no 'prompt': give a prompt, or "
                                        "chosen and rejected as whole conversations")
    chosen, rejected = _messages(values["chosen"], "chosen"), _messages(values["rejected"], "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == len(chosen) == len(rejected):
        raise _RowProblem("rejected", "'chosen' and 'rejected' are identical: the pair teaches nothing")
    if shared == 0 or chosen[shared - 1]["role"] == "assistant":
        raise _RowProblem("chosen", "chosen and rejected must share the prompt (their beginning, ending with "
                                    "the user's turn) and differ in the assistant's answer")
    label = {"chosen": chosen[shared:], "rejected": rejected[shared:]}
    for field in label:
        if not label[field] or any(m["role"] != "assistant" for m in label[field]):
            raise _RowProblem(field, f"after the shared prompt, '{field}' must hold only assistant turns")
    return chosen[:shared], label

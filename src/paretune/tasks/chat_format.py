"""Conversations into token ids with a trained/masked flag per token, and generation prompts.

Chat mode renders a conversation with the tokenizer's chat template (its own, a named one, or a
Jinja file) and trains the tokens of the assistant turns only: each assistant turn's characters run
from where the template puts its content (found by rendering the turn with a marker in place of
the text) to the end of that turn in the conversation rendered through it. What a template injects
before an answer (the role header; SmolLM2's default system prompt when a conversation starts with
the assistant) is never trained. Tokens are mapped to those characters through the fast
tokenizer's offsets, so BPE merges at a boundary cannot shift the mask. The end-of-turn token after
an answer is always trained: a model that never saw it trained never stops generating.

Raw mode (no template, or `task.chat: false`) joins prompt and answer as text and appends EOS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paretune.errors import ParetuneError

# Tokens that end a turn in common templates (ChatML, Llama 3, Gemma, Phi-3), besides the EOS.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")

# Templates by name, for tokenizers without one. ChatML needs <|im_start|> and <|im_end|> in the
# vocabulary (SmolLM2, Qwen); the template is saved with the run either way.
NAMED_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
        "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
        "{% endif %}"
    ),
}


def load_template(name_or_path: str) -> str:
    """A named template's text, or a Jinja file's."""
    if name_or_path in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[name_or_path]
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ParetuneError(f"task.chat_template: '{name_or_path}' is neither a named template "
                            f"({', '.join(NAMED_TEMPLATES)}) nor a Jinja file")
    return path.read_text(encoding="utf-8")


def end_of_turn_ids(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    return ids | {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}


@dataclass
class TokenRow:
    ids: list[int]
    trained: list[bool]  # per token: is it a target the loss learns?
    # Where the last answer starts (its first token), None for raw text: what a cut to
    # data.max_length keeps (`fit_row`).
    answer_start: int | None = None


@dataclass
class Fitted:
    row: TokenRow
    prompt_cut: int = 0  # tokens dropped from the prompt's start
    answer_cut: int = 0  # tokens dropped from the end (the answer itself did not fit)


def fit_row(row: TokenRow, max_length: int, bos_id: int | None) -> Fitted:
    """`row` cut to `max_length` tokens keeping its last answer: the prompt loses tokens from its
    start (the question and the end of the context stay next to the answer; a leading BOS is kept).
    Raw text, and an answer longer than `max_length` by itself, are cut from the end."""
    over = len(row.ids) - max_length
    if over <= 0:
        return Fitted(row)
    keep_first = 1 if row.ids and bos_id is not None and row.ids[0] == bos_id else 0
    start = row.answer_start
    if start is not None and start - keep_first >= over:
        cut = slice(keep_first, keep_first + over)
        ids, trained = list(row.ids), list(row.trained)
        del ids[cut], trained[cut]
        return Fitted(TokenRow(ids, trained, start - over), prompt_cut=over)
    prompt_cut = 0
    if start is not None:  # even the answer does not fit: as much of it as does, after no prompt
        prompt_cut = start - keep_first
        row = TokenRow(row.ids[:keep_first] + row.ids[start:], row.trained[:keep_first] + row.trained[start:],
                       keep_first)
    return Fitted(TokenRow(row.ids[:max_length], row.trained[:max_length], row.answer_start),
                  prompt_cut, max(len(row.ids) - max_length, 0))


def render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as err:  # jinja2 errors of a user's template: any type
        raise ParetuneError(f"the chat template failed on a conversation: {type(err).__name__}: {err}") from None


def answer_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn's content (through its
    end-of-turn marker) in it."""
    full = render(tokenizer, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        upto = render(tokenizer, messages[: i + 1], False)
        start = _content_start(tokenizer, messages[:i], upto)
        if not full.startswith(upto):
            raise ParetuneError(NOT_PREFIX_STABLE)
        # Up to the end-of-turn marker: the newline a template writes after it is never generated.
        spans.append((start, len(upto.rstrip())))
    return full, spans


# Stands in for an answer's text to find where the template puts it: no whitespace (templates trim)
# and nothing a template would escape or recognise.
ANSWER_MARKER = "PARETUNEANSWERMARKER7F3A"
NOT_PREFIX_STABLE = ("the chat template renders a conversation differently from its beginning (it is not "
                     "prefix-stable), so the assistant turns cannot be located; use another template "
                     "(task.chat_template) or task.chat: false")


def _content_start(tokenizer, earlier: list[dict], upto: str) -> int:
    """Where the assistant turn after `earlier` starts its content in `upto` (that conversation
    rendered through the turn). Found by rendering the turn with a marker for its content, so what a
    template injects before it (a default system prompt when none was given, the role header) is
    never taken for the answer, whether or not a turn came before."""
    before = render(tokenizer, earlier, True) if earlier else ""
    if not upto.startswith(before):
        raise ParetuneError(NOT_PREFIX_STABLE)
    probe = render(tokenizer, [*earlier, {"role": "assistant", "content": ANSWER_MARKER}], False)
    start = probe.find(ANSWER_MARKER)
    if start < 0 or upto[:start] != probe[:start]:
        # A template that drops or rewrites answers, or renders a turn by its text: the answer is
        # what follows the generation prompt, as it renders.
        return len(before)
    return start


def chat_tokens(tokenizer, messages: list[dict], train_on_prompt: bool, end_ids: set[int]) -> TokenRow:
    text, spans = answer_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    in_answer = [any(s < end and e > start for start, end in spans) for s, e in offsets]
    trained = [train_on_prompt or inside for inside in in_answer]
    for t in range(1, len(ids)):  # the end-of-turn token right after an answer trains too
        if trained[t - 1] and not trained[t] and ids[t] in end_ids:
            trained[t] = True
    last = spans[-1][0] if spans else None
    answer_start = next((t for t, (s, e) in enumerate(offsets) if last is not None and e > last), None)
    return TokenRow(ids, trained, answer_start)


def raw_tokens(tokenizer, prompt: str, answer: str | None, train_on_prompt: bool) -> TokenRow:
    """Prompt then answer as plain text, EOS after the answer (raw text rows: prompt "" and
    everything trained)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
    if not prompt:
        prompt_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] if answer else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = list(prompt_ids) + list(answer_ids) + eos
    return TokenRow(ids, [train_on_prompt] * len(prompt_ids) + [True] * (len(answer_ids) + len(eos)),
                    len(prompt_ids) if prompt else None)


def raw_prompt(messages: list[dict]) -> str:
    """A conversation's text before its last answer, for raw mode: turns joined by blank lines."""
    if messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return "\n\n".join(m["content"] for m in messages)


def shifted_targets(row: TokenRow, ignore: int) -> np.ndarray:
    """Target of position t is token t+1 when that token is trained, else `ignore`: the shift is
    done here, so packed examples never predict the next example's first token."""
    ids = np.asarray(row.ids, dtype=np.int64)
    targets = np.full(len(ids), ignore, dtype=np.int64)
    trained = np.asarray(row.trained[1:], dtype=bool)
    targets[:-1][trained] = ids[1:][trained]
    return targets

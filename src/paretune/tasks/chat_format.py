"""Conversations into token ids with a trained/masked flag per token, and generation prompts.

Chat mode renders a conversation with the tokenizer's chat template (its own, a named one, or a
Jinja file) and trains the tokens of the assistant turns only: each assistant turn's characters
are the difference between the conversation rendered up to and including that turn and the one
rendered up to the turn before it with the generation prompt. Tokens are mapped to those
characters through the fast tokenizer's offsets, so BPE merges at a boundary cannot shift the
mask. The end-of-turn token after an answer is always trained: a model that never saw it
trained never stops generating.

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


def render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as err:  # jinja2 errors of a user's template: any type
        raise ParetuneError(f"the chat template failed on a conversation: {type(err).__name__}: {err}") from None


def answer_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it."""
    full = render(tokenizer, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], True) if i else ""
        upto = render(tokenizer, messages[: i + 1], False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise ParetuneError("the chat template renders a conversation differently from its beginning "
                                "(it is not prefix-stable), so the assistant turns cannot be located; "
                                "use another template (task.chat_template) or task.chat: false")
        # Up to the end-of-turn marker: the newline a template writes after it is never generated.
        spans.append((len(before), len(upto.rstrip())))
    return full, spans


def chat_tokens(tokenizer, messages: list[dict], train_on_prompt: bool, end_ids: set[int]) -> TokenRow:
    text, spans = answer_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    trained = [train_on_prompt or any(s < end and e > start for start, end in spans) for s, e in offsets]
    for t in range(1, len(ids)):  # the end-of-turn token right after an answer trains too
        if trained[t - 1] and not trained[t] and ids[t] in end_ids:
            trained[t] = True
    return TokenRow(ids, trained)


def raw_tokens(tokenizer, prompt: str, answer: str | None, train_on_prompt: bool) -> TokenRow:
    """Prompt then answer as plain text, EOS after the answer (raw text rows: prompt "" and
    everything trained)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt else []
    if not prompt:
        prompt_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] if answer else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = list(prompt_ids) + list(answer_ids) + eos
    return TokenRow(ids, [train_on_prompt] * len(prompt_ids) + [True] * (len(answer_ids) + len(eos)))


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

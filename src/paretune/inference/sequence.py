"""One request's sequence in the engine: its prompt, the tokens generated so far, the text they
decode to (cut at a stop string), why it finished, and who is told about each new piece.

Text is re-decoded from all generated tokens at each step, so what a byte-level tokenizer splits
inside one character comes out whole. While a sequence runs, the text that could still become a
stop string (a suffix that is a stop string's beginning) or an unfinished character is held back
from streaming: a client never receives text that the final answer does not contain.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from paretune.inference.sampling import SamplingParams, new_generator

_ids = itertools.count(1)

# Why a sequence ended, as OpenAI's finish_reason where one applies.
STOP, LENGTH, CANCELLED, TIMEOUT, ERROR = "stop", "length", "cancelled", "timeout", "error"


@dataclass
class Update:
    """What a front end reads after a step: new text, and the reason when the sequence ended."""

    text: str
    finish_reason: str | None
    sequence: "Sequence"


class Sequence:
    def __init__(self, prompt_ids: list[int], params: SamplingParams, *, deadline: float | None = None,
                 adapter: str | None = None, constraint: Any = None,
                 on_update: Callable[[Update], None] | None = None):
        self.id = next(_ids)
        self.prompt_ids = list(prompt_ids)
        self.params = replace(params, stop=list(params.stop))  # its own: the engine caps max_new_tokens
        self.deadline = deadline  # time.monotonic() after which the caller no longer waits
        self.adapter = adapter  # the LoRA adapter this request runs through (None: the base model)
        self.constraint = constraint  # structured output: mask_logits / accept / is_finished
        self.on_update = on_update
        self.generator = new_generator(params)
        self.generated: list[int] = []
        self.text = ""
        self.sent = 0  # characters of `text` already handed to on_update
        self.finish_reason: str | None = None
        self.error: BaseException | None = None
        self.submitted = time.monotonic()
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self._cancel_reason: str | None = None
        self.done = threading.Event()

    # --- called by front ends (any thread) ---------------------------------------------------
    def cancel(self, reason: str = CANCELLED) -> None:
        """Stop at the next step: the client went away or its deadline passed."""
        self._cancel_reason = self._cancel_reason or reason

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    # --- called by the engine thread ---------------------------------------------------------
    def should_stop_early(self, now: float) -> str | None:
        if self._cancel_reason:
            return self._cancel_reason
        if self.deadline is not None and now >= self.deadline:
            return TIMEOUT
        return None

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.generated)

    def add_token(self, token: int, tokenizer, end_ids: set[int]) -> None:
        """Take the token chosen this step; finish on end of turn, stop string, length or constraint."""
        now = time.monotonic()
        self.first_token_at = self.first_token_at or now
        self.last_token_at = now
        self.generated.append(token)
        if self.constraint is not None:
            self.constraint.accept(token)
        ended = token in end_ids
        body = self.generated[:-1] if ended else self.generated
        self.text = tokenizer.decode(body, skip_special_tokens=True)
        cut = min((self.text.find(s) for s in self.params.stop if s and s in self.text), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.finish(STOP)
        elif ended or (self.constraint is not None and self.constraint.is_finished()):
            self.finish(STOP)
        elif len(self.generated) >= self.params.max_new_tokens:
            self.finish(LENGTH)
        else:
            self._publish(self._safe_end())

    def finish(self, reason: str, error: BaseException | None = None) -> None:
        if self.finished:
            return
        self.finish_reason, self.error = reason, error
        self._publish(len(self.text))
        self.done.set()

    def _safe_end(self) -> int:
        """How much of the text may be streamed now: all but a possible stop string's start or a
        character still being decoded."""
        end = len(self.text)
        while end and self.text[end - 1] == "\ufffd":
            end -= 1
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, end), 0, -1):
                if self.text[:end].endswith(stop[:k]):
                    end -= k
                    break
        return max(end, self.sent)

    def _publish(self, end: int) -> None:
        delta = self.text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        if self.on_update is not None and (delta or self.finished):
            self.on_update(Update(delta, self.finish_reason, self))

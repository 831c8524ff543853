"""Structured output: OpenAI's `response_format` enforced while decoding, token by token.

The grammar library is llguidance (Microsoft's guidance engine; the one llama.cpp and vLLM ship as
a backend). It runs on CPU, computes a token mask in tens of microseconds from a Rust lexer/parser
over the tokenizer's byte-level vocabulary, compiles JSON schemas with no warm-up, and reports a
schema it cannot honour as an error instead of silently loosening it.

One `OutputConstraint` per request (its own matcher state); the compiled tokenizer (about a second
for a large vocabulary) is made once per tokenizer and shared. The engine calls `mask_logits`
before choosing each token, `accept` with the token it chose, and `is_finished` to stop.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import torch

from paretune.errors import ParetuneError
from paretune.tasks.chat_format import end_of_turn_ids

FIELD = "response_format"
# Compact JSON (", " and ": " are still allowed inside strings): flexible whitespace lets a weak
# model spend its whole budget on blanks between values.
JSON_OPTIONS = {"whitespace_flexible": False}

_compiled: dict[int, tuple[weakref.ref, Any]] = {}
_compiled_lock = threading.Lock()


def compiled_tokenizer(tokenizer):
    """llguidance's view of a Hugging Face fast tokenizer, made once per tokenizer object. Every
    end-of-turn token counts as its end of sequence, as it does for the decoding engine."""
    import llguidance.hf

    key = id(tokenizer)
    with _compiled_lock:
        cached = _compiled.get(key)
        if cached is not None and cached[0]() is tokenizer:
            return cached[1]
        try:
            compiled = llguidance.hf.from_tokenizer(tokenizer, eos_token=sorted(end_of_turn_ids(tokenizer)))
        except ValueError as err:  # a slow tokenizer, or a vocabulary llguidance cannot read as bytes
            raise ParetuneError(f"{FIELD}: structured output is not available for this model's tokenizer "
                                f"({type(tokenizer).__name__}): {err}") from None
        _compiled[key] = (weakref.ref(tokenizer, lambda _ref, key=key: _compiled.pop(key, None)), compiled)
        return compiled


def schema_of(response_format: Any) -> dict | None:
    """The JSON schema a `response_format` asks for (None: plain text); refuses a malformed one."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ParetuneError(f"{FIELD}: must be an object such as {{\"type\": \"json_object\"}}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise ParetuneError(f"{FIELD}.type: must be 'text', 'json_object' or 'json_schema', not {kind!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise ParetuneError(f"{FIELD}.json_schema: required with type 'json_schema': an object with "
                            "'name' and 'schema'")
    if "name" in spec and not isinstance(spec["name"], str):
        raise ParetuneError(f"{FIELD}.json_schema.name: must be a string")
    if "strict" in spec and not isinstance(spec["strict"], (bool, type(None))):
        raise ParetuneError(f"{FIELD}.json_schema.strict: must be true or false")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise ParetuneError(f"{FIELD}.json_schema.schema: required, a JSON schema object")
    return schema


class OutputConstraint:
    """The tokens a request may produce next, for one request's answer."""

    def __init__(self, matcher, grammar_vocab: int, label: str):
        self._matcher = matcher
        self._grammar_vocab = grammar_vocab  # tokens the grammar knows; a model's padded rows are never allowed
        self.label = label

    @classmethod
    def from_response_format(cls, tokenizer, response_format: dict | None) -> "OutputConstraint | None":
        """A constraint for `response_format` (None when it asks for plain text). A malformed request
        or a schema llguidance cannot compile is a ParetuneError naming the field."""
        import llguidance

        schema = schema_of(response_format)
        if schema is None:
            return None
        where = f"{FIELD}.json_schema.schema" if response_format.get("type") == "json_schema" else FIELD
        compiled = compiled_tokenizer(tokenizer)
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        except (ValueError, TypeError) as err:
            raise ParetuneError(f"{where}: not a usable JSON schema: {err}") from None
        problem = llguidance.LLMatcher.validate_grammar(grammar, compiled)
        if problem:
            raise ParetuneError(f"{where}: the schema cannot be enforced: {problem.strip()}")
        matcher = llguidance.LLMatcher(compiled, grammar, log_level=0)
        if matcher.is_error():
            raise ParetuneError(f"{where}: the schema cannot be enforced: {matcher.get_error()}")
        return cls(matcher, compiled.vocab_size, response_format["type"])

    def allowed(self) -> torch.Tensor:
        """A boolean mask over the grammar's vocabulary: the tokens that may come next."""
        packed = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)  # one bit per token, 32-bit words
        bits = np.unpackbits(packed, bitorder="little")[: self._grammar_vocab]
        return torch.from_numpy(bits.astype(bool))

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (1-D over the model's vocabulary) with every token the grammar forbids at -inf."""
        allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
        shared = min(self._grammar_vocab, logits.shape[-1])
        allowed[:shared] = self.allowed()[:shared]
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def accept(self, token_id: int) -> None:
        """Advance past the token the engine chose (one that `mask_logits` allowed)."""
        if self._matcher.is_stopped() and not self._matcher.is_error():
            return  # already complete: the end-of-turn token that follows changes nothing
        if not self._matcher.consume_token(int(token_id)):
            raise ParetuneError(f"{FIELD}: token {token_id} does not fit the requested format "
                                f"({self._matcher.get_error() or 'refused by the grammar'})")

    def is_finished(self) -> bool:
        """The answer is complete: only an end of sequence may follow."""
        return self._matcher.is_stopped()

"""OpenAI's chat and completions requests, checked, and the shapes of their answers.

Requests are read strictly: a wrong type is a 400 naming the field, never coerced; a field this
server does not implement (penalties, logprobs, tools, n > 1, ...) is a 400 naming it, never
silently ignored (a neutral value, such as `presence_penalty: 0`, is accepted: it asks for nothing).
Errors use OpenAI's body, `{"error": {"message", "type", "param", "code"}}`, which the `openai`
client turns into its exceptions.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from paretune.serving.framing import DuplicateKey, unique_keys

# Fields OpenAI defines that this server accepts only at the value that asks for nothing.
NEUTRAL = {"frequency_penalty": 0, "presence_penalty": 0, "logprobs": False, "n": 1, "echo": False,
           "best_of": 1, "parallel_tool_calls": None, "tools": None, "functions": None, "logit_bias": None,
           "top_logprobs": None, "suffix": None}


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.headers = status, message, param, kind, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class Sampling(BaseModel):
    """The fields chat and completions share."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None  # the caller's own label for its user; not used for anything

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("at most 4 stop strings, none empty")
        return stops

    def stop_strings(self) -> list[str]:
        return list(self.stop or [])

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[Message]) -> list[Message]:
        if messages and messages[-1].role != "user":
            raise ValueError("the last message must be the user's (role: user)")
        return messages

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(Sampling):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt):
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("one prompt per request (a string, or a list of one string)")
        text = prompt if isinstance(prompt, str) else prompt[0]
        if not text:
            raise ValueError("the prompt is empty")
        return text

    def token_limit(self) -> int | None:
        return self.max_tokens


def parse_request(model: type[Sampling], body: bytes) -> Sampling:
    """The checked request, or an OpenAIError(400) naming the field."""
    try:
        raw = json.loads(body, object_pairs_hook=unique_keys)
    except DuplicateKey as err:
        key = err.key[:100]
        raise OpenAIError(400, f"{key}: the JSON body holds this key more than once; send each field once",
                          param=key) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise OpenAIError(400, f"the body is not valid JSON (UTF-8): {str(err)[:200]}") from None
    if not isinstance(raw, dict):
        raise OpenAIError(400, "the body must be a JSON object")
    try:
        request = model.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise OpenAIError(400, f"{where}: {first['msg']}", param=where) from None
    for name, value in (request.model_extra or {}).items():
        if name not in NEUTRAL:
            raise OpenAIError(400, f"{name}: not a field this server knows or implements", param=name)
        if value != NEUTRAL[name] and value is not None:
            raise OpenAIError(400, f"{name}: not implemented by this server (only {NEUTRAL[name]!r} is accepted)",
                              param=name)
    return request


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class Answer:
    """The envelope of one answer: id, creation time, model, and whether it is chat."""

    def __init__(self, model: str, chat: bool):
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created, self.model, self.chat = int(time.time()), model, chat

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, text: str, finish_reason: str, used: dict[str, int]) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason,
                      "logprobs": None}
            return {**self._envelope("chat.completion"), "choices": [choice], "usage": used}
        choice = {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}
        return {**self._envelope("text_completion"), "choices": [choice], "usage": used}

    def chunk(self, text: str | None, finish_reason: str | None = None, first: bool = False,
              with_usage: bool = False) -> dict[str, Any]:
        """One streamed piece; `text` None with a finish reason is the last one."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else (
                {"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            body = {**self._envelope("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
            body = {**self._envelope("text_completion"), "choices": [choice]}
        if with_usage:
            body["usage"] = None  # OpenAI sends null on every chunk but the usage one when asked
        return body

    def usage_chunk(self, used: dict[str, int]) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._envelope(kind), "choices": [], "usage": used}

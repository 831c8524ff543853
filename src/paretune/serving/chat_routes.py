"""OpenAI-compatible routes of a generative run, on the same app as /v1/predict (same keys, rate
limit, body limit, access log and metrics):

    POST /v1/chat/completions   messages in, the assistant's answer out (or streamed as SSE)
    POST /v1/completions        a plain prompt continued
    GET  /v1/models             the runs served (`model` in a request picks one)

Order of checks: the app's middleware (framing, body size) -> key and rate limit (401, 429) ->
content type (415) -> JSON, fields and limits (400, naming the field) -> `model` (404) -> room in
the engine within the timeout (503) -> the answer, or 504 when the deadline passes first.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from paretune.errors import ParetuneError
from paretune.inference.sampling import SamplingParams
from paretune.inference.sequence import ERROR, LENGTH, STOP, TIMEOUT, Sequence
from paretune.serving.batcher import Overloaded
from paretune.serving.chat_adapters import ServedModel
from paretune.serving.chat_runner import ChatRunner
from paretune.serving.framing import is_json, media_type
from paretune.serving.limits import retry_after_header
from paretune.serving.openai_schema import (Answer, ChatRequest, CompletionRequest, OpenAIError, Sampling,
                                            parse_request, usage)
from paretune.serving.settings import ServeSettings

CHAT_ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models"}


def add_chat_routes(app: FastAPI, runner: ChatRunner, caller, settings: ServeSettings) -> None:
    models = runner.models  # the names a request's `model` may give: one run, or LoRA runs over one base

    @app.get("/v1/models")
    async def list_models(_: str = Depends(caller)) -> dict[str, Any]:
        """The runs this server answers for, by the name a request gives as `model`."""
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "paretune"}
                                           for name in models]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, _: str = Depends(caller)):
        """OpenAI's chat completions: the run's chat template, its end-of-turn tokens, streaming."""
        return await _answer(request, ChatRequest, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request, _: str = Depends(caller)):
        """OpenAI's (legacy) completions: the prompt is continued as plain text."""
        return await _answer(request, CompletionRequest, chat=False)

    async def _answer(request: Request, schema: type[Sampling], chat: bool):
        try:
            _check_content_type(request)
            payload = parse_request(schema, await request.body())
            if payload.model not in models:
                raise OpenAIError(404, f"model: no model named {payload.model!r} is served here (see GET "
                                       f"/v1/models: {', '.join(models)})", param="model", kind="not_found_error")
            sequence = await asyncio.to_thread(_sequence, runner, settings, payload, chat, models[payload.model])
            updates = runner.open_stream(sequence)
        except OpenAIError as err:
            return _error(err)
        except Overloaded as err:
            return _error(OpenAIError(503, f"busy: {err}; retry shortly", kind="server_error",
                                      headers={"Retry-After": retry_after_header(err.retry_after_s)}))
        answer = Answer(payload.model, chat)
        if payload.stream:
            return StreamingResponse(_events(updates, answer, payload, sequence), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _whole(updates, answer, sequence, request)


def _check_content_type(request: Request) -> None:
    sent = media_type(request.headers)
    if not is_json(sent):
        raise OpenAIError(415, "the body must be JSON sent as `Content-Type: application/json`, not "
                               f"{sent[:100] or 'without a Content-Type'}")


def _sequence(runner: ChatRunner, settings: ServeSettings, payload: Sampling, chat: bool,
              model: ServedModel) -> Sequence:
    """The request as a sequence for the engine (off the event loop: templating and tokenizing)."""
    limit_field = "max_completion_tokens" if getattr(payload, "max_completion_tokens", None) else "max_tokens"
    limit = payload.token_limit()
    if limit is not None and limit > settings.max_new_tokens:
        raise OpenAIError(400, f"{limit_field}: {limit} is over this server's limit of {settings.max_new_tokens} "
                               "generated tokens (--max-new-tokens)", param=limit_field)
    field = "messages" if chat else "prompt"
    try:
        if chat:
            messages = [{"role": m.role, "content": m.text()} for m in payload.messages]
            prompt = runner.prompt_ids(messages, chat=True, model=model)
        else:
            prompt = runner.prompt_ids(payload.prompt, chat=False, model=model)
    except ParetuneError as err:
        raise OpenAIError(400, f"{field}: {err}", param=field) from None
    context = runner.engine.context
    if context is not None and len(prompt) >= context:
        raise OpenAIError(400, f"{field}: the prompt has {len(prompt)} tokens; the model's context is {context} "
                               "tokens, and at least one must be left for the answer", param=field)
    constraint = None
    if payload.response_format is not None:
        from paretune.inference.structured import OutputConstraint

        try:
            constraint = OutputConstraint.from_response_format(runner.tokenizer, payload.response_format)
        except ParetuneError as err:
            raise OpenAIError(400, str(err), param="response_format") from None
    seed = payload.seed if payload.seed is not None else secrets.randbits(63)
    params = SamplingParams(max_new_tokens=limit or settings.max_new_tokens, temperature=payload.temperature,
                            top_p=payload.top_p, stop=payload.stop_strings(), seed=seed)
    return Sequence(prompt, params, deadline=runner.deadline(), adapter=model.adapter, constraint=constraint)


def _error(err: OpenAIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _ended_badly(sequence: Sequence) -> OpenAIError:
    if sequence.finish_reason in (TIMEOUT, None):  # None: the engine never ended it (chat_runner._read)
        return OpenAIError(504, "the answer was not done within the request timeout", kind="timeout")
    if sequence.finish_reason == ERROR and isinstance(sequence.error, ParetuneError):
        return OpenAIError(400, str(sequence.error))
    return OpenAIError(500, "generation failed (details are in the server log)", kind="server_error")


async def _whole(updates: AsyncIterator, answer: Answer, sequence: Sequence, request: Request) -> JSONResponse:
    """The answer in one body; the sequence is cancelled if the client goes away meanwhile."""
    watcher = asyncio.create_task(_cancel_on_disconnect(request, sequence))
    try:
        async for _ in updates:
            pass
    finally:
        watcher.cancel()
    if sequence.finish_reason not in (STOP, LENGTH):
        return _error(_ended_badly(sequence))
    return JSONResponse(answer.whole(sequence.text, sequence.finish_reason, _used(sequence)))


async def _cancel_on_disconnect(request: Request, sequence: Sequence) -> None:
    with contextlib.suppress(Exception):
        while not sequence.finished:
            if await request.is_disconnected():
                sequence.cancel()
                return
            await asyncio.sleep(0.25)


async def _events(updates: AsyncIterator, answer: Answer, payload: Sampling, sequence: Sequence):
    """Server-sent events in OpenAI's chunk shapes, then `data: [DONE]`."""
    with_usage = payload.include_usage()
    try:
        if answer.chat:  # OpenAI's first chunk names the role
            yield _sse(answer.chunk("", first=True, with_usage=with_usage))
        async for update in updates:
            if update.text:
                yield _sse(answer.chunk(update.text, with_usage=with_usage))
            if update.finish_reason is None:
                continue
            if update.finish_reason in (STOP, LENGTH):
                yield _sse(answer.chunk(None, update.finish_reason, with_usage=with_usage))
                if with_usage:
                    yield _sse(answer.usage_chunk(_used(sequence)))
            else:
                yield _sse(_ended_badly(sequence).body())
        yield "data: [DONE]\n\n"
    finally:
        sequence.cancel()  # the client went away mid-stream: its row is freed at the next step


def _sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _used(sequence: Sequence) -> dict[str, int]:
    return usage(len(sequence.prompt_ids), len(sequence.generated))

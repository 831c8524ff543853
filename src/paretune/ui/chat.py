"""The playground's chat with a generative run: streamed, through `paretune serve`'s engine.

    POST /api/chat/ID   {"messages": [{"role": "user"|"assistant", "content": "..."}, ...]}
                        -> text/event-stream: data: {"delta": "..."} ... data: {"done": true, ...}

The run's Predictor (playground.Predictors) is wrapped in serve's ChatRunner
(serving/chat_runner.py): the same chat template, system prompt, continuous-batching engine and
per-request deadline (the playground's 60 s), after which the engine drops the sequence; a browser
that leaves cancels it within one step. The playground's text box answers a generative run
through the same runner (playground.py). One chat run is kept started at a time; opening another
stops the first.
"""
from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from paretune.errors import ParetuneError
from paretune.ui.catalog import Catalog

MAX_MESSAGES = 40
MAX_NEW_TOKENS = 256
ROLES = ("user", "assistant")


class ChatRunners:
    """The started ChatRunner of the run chatted with last; every answer it gives stops at
    `deadline_s` (the engine drops the sequence at its next step)."""

    def __init__(self, predictors, deadline_s: float):
        self.predictors, self.deadline_s = predictors, deadline_s
        self._current: tuple[str, object] | None = None
        self._lock = asyncio.Lock()

    async def get(self, run_id: str, run_dir):
        from paretune.serving.chat_runner import ChatRunner
        from paretune.serving.metrics import ServerMetrics
        from paretune.serving.settings import ServeSettings

        async with self._lock:
            if self._current is not None and self._current[0] == run_id:
                return self._current[1]
            try:
                predictor = await run_in_threadpool(self.predictors.get, run_id, run_dir)
                labels = {"run": run_id, "task": predictor.task.name, "method": "", "base_model": ""}
                settings = ServeSettings(max_new_tokens=MAX_NEW_TOKENS, request_timeout_s=self.deadline_s)
                runner = ChatRunner(predictor, ServerMetrics(labels), settings)
            except ParetuneError as err:  # e.g. a prefix-tuned run, which the engine cannot batch
                raise HTTPException(422, str(err)) from None
            runner.start()
            await self.close()
            self._current = (run_id, runner)
            return runner

    async def close(self) -> None:
        if self._current is not None:
            _, runner = self._current
            self._current = None
            await runner.close(5.0)


def add_routes(app: FastAPI, runners: ChatRunners) -> None:
    catalog: Catalog = app.state.catalog
    app.router.add_event_handler("shutdown", runners.close)

    @app.post("/api/chat/{run_id}", include_in_schema=False)
    async def chat(request: Request, run_id: str):
        from paretune.inference.sampling import SamplingParams
        from paretune.inference.sequence import ERROR, Sequence
        from paretune.serving.batcher import Overloaded

        run = catalog.find(run_id)
        if run is None or run.status != "finished":
            raise HTTPException(404, "no finished run with this id in the folders given")
        messages = await _messages_from(request)
        runner = await runners.get(run_id, run.path)
        if not runner.task.generates:
            raise HTTPException(422, "this run does not generate text: use the text box")
        chat_template = runner.default.chat
        try:
            prompt = await run_in_threadpool(
                runner.prompt_ids, messages if chat_template else messages[-1]["content"], bool(chat_template))
        except ParetuneError as err:
            raise HTTPException(422, str(err)) from None
        sequence = Sequence(prompt, SamplingParams(max_new_tokens=runner.task.config.max_new_tokens),
                            deadline=runner.deadline(), adapter=runner.default.adapter)
        try:
            updates = runner.open_stream(sequence)
        except Overloaded as err:
            raise HTTPException(503, str(err)) from None

        async def events():
            async for update in updates:  # closing this (the browser left) cancels the sequence
                if update.text:
                    yield _event({"delta": update.text})
                if update.finish_reason is not None:
                    error = str(sequence.error) if update.finish_reason == ERROR and sequence.error else None
                    yield _event({"done": True, "finish_reason": update.finish_reason, "error": error})

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})


def _event(body: dict) -> str:
    return f"data: {json.dumps(body)}\n\n"


async def _messages_from(request: Request) -> list[dict]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(415, "send JSON: {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}")
    body = await request.body()
    if len(body) > 64_000:
        raise HTTPException(413, "the conversation is too long for the playground")
    try:
        messages = json.loads(body).get("messages")
    except (ValueError, AttributeError):
        raise HTTPException(422, "the body is not a JSON object with `messages`") from None
    if not isinstance(messages, list) or not 0 < len(messages) <= MAX_MESSAGES:
        raise HTTPException(422, f"`messages`: a list of 1 to {MAX_MESSAGES} messages")
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or message.get("role") not in ROLES or \
                not isinstance(message.get("content"), str) or not message["content"].strip():
            raise HTTPException(422, f"message {number}: give a role (user or assistant) and non-empty content")
    if messages[-1]["role"] != "user":
        raise HTTPException(422, "the last message must be the user's")
    return [{"role": m["role"], "content": m["content"]} for m in messages]

"""The decoding engine (paretune.inference) as the server's model runner for generative runs.

One engine thread runs decode steps over every request's sequence (continuous batching). The
HTTP side submits sequences and reads their text as it comes: `stream` for the OpenAI routes,
`submit` (the MicroBatcher's interface) for /v1/predict. Every sequence carries its request's
deadline and is cancelled when its caller gives up or goes away, so the engine drops it within
one step instead of finishing work nobody will receive.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import AsyncIterator

from paretune.data.examples import Example
from paretune.inference.engine import Engine
from paretune.inference.sampling import SamplingParams
from paretune.inference.scheduler import QueueFull
from paretune.inference.sequence import CANCELLED, ERROR, LENGTH, STOP, TIMEOUT, Sequence, Update
from paretune.serving.batcher import Overloaded
from paretune.serving.chat_adapters import ServedModel, served_model
from paretune.serving.chat_metrics import EngineMetrics
from paretune.serving.metrics import ServerMetrics
from paretune.serving.settings import ServeSettings

log = logging.getLogger("paretune.serve")
LOST_AFTER_S = 10.0  # past a deadline, how long a reader waits for the engine to end the sequence


class ChatRunner:
    def __init__(self, predictor, metrics: ServerMetrics, settings: ServeSettings):
        self.predictor, self.settings = predictor, settings
        self.task, self.tokenizer = predictor.task, predictor.tokenizer
        # The names a request's `model` may give: the run, or each LoRA run over a shared base
        # (chat_adapters.py), each with its own template and system prompt, as in its training.
        served = getattr(predictor, "served_models", None) or [
            served_model(Path(predictor.run_dir).name, None, self.task, self.tokenizer)]
        self.models: dict[str, ServedModel] = {m.name: m for m in served}
        self.default = served[0]
        self.engine = Engine(predictor.model, self.tokenizer, predictor.device,
                             max_running=settings.max_batch_size, max_queue=settings.max_queue,
                             observer=EngineMetrics(metrics))
        self.ready = threading.Event()
        self.warm_up_error: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.engine.start()
        threading.Thread(target=self._warm_up, name="paretune-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        try:
            prompt = self.prompt_ids([{"role": "user", "content": "Hello."}], chat=True)
            self.engine.generate([prompt], SamplingParams(max_new_tokens=4))
        except Exception as err:  # the server stays up to say why on /readyz and in the log
            log.exception("warm-up generation failed; the server will not report ready")
            self.warm_up_error = f"{type(err).__name__}: {err}"
            return
        self.ready.set()
        log.info("generation engine warmed up; ready for requests")

    async def close(self, timeout: float | None = None) -> None:
        self.ready.clear()
        await asyncio.to_thread(self.engine.stop, timeout)

    # --- prompts --------------------------------------------------------------------------------
    def prompt_ids(self, conversation: list[dict] | str, chat: bool, model: ServedModel | None = None) -> list[int]:
        """Token ids of a conversation (the run's chat template and system prompt, as in training),
        or of a plain prompt (completions: the text as is)."""
        model = model or self.default
        if not chat:
            return model.tokenizer(conversation, add_special_tokens=True)["input_ids"]
        return model.task.prompt_ids(Example(conversation, None, 1), model.tokenizer, model.chat)

    def admit(self, sequences: list[Sequence]) -> None:
        """Queue sequences, or Overloaded (503) when they could not start within the timeout."""
        wait_s = self.engine.expected_wait_s()
        if wait_s > self.settings.request_timeout_s:
            raise Overloaded(f"the queued answers would take {wait_s:.1f} s to start, more than the "
                             f"{self.settings.request_timeout_s:g} s timeout", wait_s - self.settings.request_timeout_s)
        try:
            self.engine.submit(sequences)
        except QueueFull as err:
            raise Overloaded(str(err), err.retry_after_s) from None

    def deadline(self) -> float:
        return time.monotonic() + self.settings.request_timeout_s

    # --- the OpenAI routes ----------------------------------------------------------------------
    def open_stream(self, sequence: Sequence) -> AsyncIterator[Update]:
        """Queue the sequence (Overloaded now if it cannot start in time) and return its updates as
        they come; the sequence is cancelled when the caller stops reading (it went away)."""
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[Update] = asyncio.Queue()
        sequence.on_update = lambda update: loop.call_soon_threadsafe(updates.put_nowait, update)
        self.admit([sequence])
        return _read(updates, sequence)

    # --- /v1/predict (the MicroBatcher interface) -------------------------------------------
    @contextmanager
    def incoming(self):
        yield

    def submit(self, texts: list[str], all_scores: bool) -> Future:
        """A future of [{"completion": text}] per text; cancelling it cancels the sequences."""
        params = SamplingParams(max_new_tokens=self.task.config.max_new_tokens)
        deadline = self.deadline()
        chat = self.default.chat
        sequences = [Sequence(self.prompt_ids([{"role": "user", "content": text}] if chat else text, chat), params,
                              deadline=deadline, adapter=self.default.adapter) for text in texts]
        future: Future = Future()
        remaining = [len(sequences)]
        lock = threading.Lock()

        def finished(update: Update) -> None:
            if update.finish_reason is None:
                return
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last and not future.done():
                _settle(future, sequences)

        for sequence in sequences:
            sequence.on_update = finished
        future.add_done_callback(lambda f: [s.cancel(CANCELLED) for s in sequences] if f.cancelled() else None)
        self.admit(sequences)
        return future


async def _read(updates: asyncio.Queue, sequence: Sequence) -> AsyncIterator[Update]:
    """The sequence's updates until it ends. The engine ends a sequence within one step of its
    deadline; should it never (a bug), the reader stops `LOST_AFTER_S` past the deadline with a
    timeout rather than hold its client forever."""
    try:
        while True:
            wait = None if sequence.deadline is None else sequence.deadline + LOST_AFTER_S - time.monotonic()
            try:
                update = await asyncio.wait_for(updates.get(), timeout=None if wait is None else max(wait, 0.0))
            except TimeoutError:
                log.error("the engine did not end sequence %d within %g s of its deadline; its request "
                          "ends with a timeout", sequence.id, LOST_AFTER_S)
                yield Update("", TIMEOUT, sequence)
                return
            yield update
            if update.finish_reason is not None:
                return
    finally:
        sequence.cancel(CANCELLED)  # a no-op once finished; frees the row if the client left


def _settle(future: Future, sequences: list[Sequence]) -> None:
    failed = next((s for s in sequences if s.finish_reason == ERROR), None)
    late = next((s for s in sequences if s.finish_reason not in (STOP, LENGTH, ERROR)), None)
    try:
        if failed is not None:
            future.set_exception(failed.error or RuntimeError("generation failed"))
        elif late is not None:
            future.set_exception(TimeoutError(f"generation ended early ({late.finish_reason})"))
        else:
            future.set_result([{"completion": s.text} for s in sequences])
    except Exception:  # cancelled by its caller meanwhile
        pass

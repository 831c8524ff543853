"""The playground: type a text, see what a finished run predicts for it.

Predictions go through the Predictor `paretune serve` and `paretune predict` use, loaded by the
server's own loader (serving/loading.py), never with remote code. Models are loaded on first use
and the least recently used is dropped past `max_loaded`.

Every request stops its work at the deadline (DEADLINE_S), not only its wait:
- a generative run answers through serve's ChatRunner (chat.py): its sequence carries the
  deadline and is cancelled when the request gives up, so the engine drops it at its next step;
- any other run predicts one text or one image, cut to the run's max_length (a bounded forward
  pass), one at a time: a request that cannot start within the deadline gets 503, one whose
  answer takes longer 504.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from paretune.errors import ParetuneError
from paretune.ui.catalog import Catalog

MAX_CHARS = 4000
MAX_IMAGE_BYTES = 10 * 2**20
MAX_IMAGE_PIXELS = 16_000_000  # as `paretune serve --max-image-pixels` by default
DEADLINE_S = 60.0


class Predictors:
    """Loaded Predictors by run id, at most `max_loaded`, least recently used dropped first."""

    def __init__(self, max_loaded: int):
        self.max_loaded = max(1, max_loaded)
        self._loaded: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str, run_dir):
        from paretune.serving.loading import load_predictor

        with self._lock:  # one load at a time: two requests for one run load it once
            if run_id in self._loaded:
                self._loaded.move_to_end(run_id)
                return self._loaded[run_id]
            predictor = load_predictor(run_dir, device=None, trust_remote_code=False)
            predictor.opens_image_paths = False  # a client's string is never a path to open here
            self._loaded[run_id] = predictor
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            return predictor


def add_routes(app: FastAPI, max_loaded: int = 2) -> None:
    catalog: Catalog = app.state.catalog
    render = app.state.render
    from paretune.ui import chat

    predictors = Predictors(max_loaded)
    one_at_a_time = asyncio.Semaphore(1)
    app.state.chat_runners = runners = chat.ChatRunners(predictors, DEADLINE_S)
    chat.add_routes(app, runners)

    @app.get("/playground", include_in_schema=False)
    def playground_page(request: Request):
        finished = [r for r in catalog.scan()[0] if r.status == "finished"]
        chosen = next((r for r in finished if r.id == request.query_params.get("run")), None)
        return render(request, "playground.html", {"runs": finished, "chosen": chosen, "max_chars": MAX_CHARS,
                                                   "images": chosen is not None and task_says(chosen.task, "takes_images"),
                                                   "chat": chosen is not None and task_says(chosen.task, "generates"),
                                                   "page": "playground"})

    @app.post("/api/predict/{run_id}", include_in_schema=False)
    async def predict(request: Request, run_id: str):
        """A text as JSON {"text": ...}, or for an image run the image's bytes as the body."""
        run = catalog.find(run_id)
        if run is None or run.status != "finished":
            raise HTTPException(404, "no finished run with this id in the folders given")
        text = await (_image_from(request) if task_says(run.task, "takes_images") else _text_from(request))
        if task_says(run.task, "generates"):
            return {"run": run.id, "task": run.task, "text": text,
                    "prediction": await _generate(await runners.get(run_id, run.path), text)}
        try:
            await asyncio.wait_for(one_at_a_time.acquire(), timeout=DEADLINE_S)
        except asyncio.TimeoutError:
            raise HTTPException(503, "busy with another prediction; retry shortly") from None
        # The next prediction waits until this one's thread is done, even if its caller gave up.
        work = asyncio.ensure_future(run_in_threadpool(_predict, predictors, run_id, run.path, text))
        work.add_done_callback(lambda _: one_at_a_time.release())
        try:
            prediction = await asyncio.wait_for(asyncio.shield(work), timeout=DEADLINE_S)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within {DEADLINE_S:g} s") from None
        except ParetuneError as err:
            raise HTTPException(422, str(err)) from None
        return {"run": run.id, "task": run.task, "text": text if isinstance(text, str) else None,
                "prediction": prediction}


def task_says(task: str | None, flag: str) -> bool:
    """A task class's flag (takes_images, generates) by the task's name in config.yaml."""
    from paretune.tasks import task_class

    try:
        return bool(task) and bool(getattr(task_class(task), flag))
    except KeyError:  # a task this install does not know: offered as text, refused by the Predictor
        return False


async def _image_from(request: Request) -> bytes:
    """The body as one image: bytes the browser sent, checked on its header before any decoding
    by the same rules as `paretune serve`'s image route (serving/images.py)."""
    from paretune.serving.images import image_problems

    if not request.headers.get("content-type", "").startswith("image/"):
        raise HTTPException(415, "send the image's bytes with its Content-Type (image/png, image/jpeg, ...)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"at most {MAX_IMAGE_BYTES // 2**20} MiB")
    problems = image_problems([bytes(body)], max_images=1, max_pixels=MAX_IMAGE_PIXELS)
    if problems:
        raise HTTPException(422, problems[0]["msg"])
    return bytes(body)


async def _generate(runner, text: str) -> dict:
    """A generative run's answer through the engine's thread. Past the deadline the sequence is
    cancelled (the engine drops it at its next step; the runner's own deadline would too)."""
    from paretune.serving.batcher import Overloaded

    try:
        future = await run_in_threadpool(runner.submit, [text], False)  # tokenizes the prompt
    except Overloaded as err:
        raise HTTPException(503, str(err)) from None
    except ParetuneError as err:
        raise HTTPException(422, str(err)) from None
    try:
        return (await asyncio.wait_for(asyncio.wrap_future(future), timeout=DEADLINE_S))[0]
    except TimeoutError:  # asyncio's and the runner's own (the sequence ended at its deadline)
        future.cancel()
        raise HTTPException(504, f"no answer within {DEADLINE_S:g} s; the generation was stopped") from None
    finally:
        future.cancel()  # a no-op once answered; otherwise (the client left) the sequence stops


def _predict(predictors: Predictors, run_id: str, run_dir, text: str | bytes) -> dict:
    predictor = predictors.get(run_id, run_dir)
    return predictor.predict([text], all_scores=True)[0]


async def _text_from(request: Request) -> str:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(415, "send JSON: {\"text\": \"...\"}")
    body = await request.body()
    if len(body) > MAX_CHARS * 4 + 100:
        raise HTTPException(413, f"at most {MAX_CHARS} characters")
    try:
        payload = json.loads(body)
    except ValueError:
        raise HTTPException(422, "the body is not valid JSON") from None
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise HTTPException(422, "give a non-empty `text`")
    if len(text) > MAX_CHARS:
        raise HTTPException(422, f"`text` has {len(text)} characters; at most {MAX_CHARS}")
    return text

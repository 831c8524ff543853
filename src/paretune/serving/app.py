"""The HTTP API: a thin FastAPI layer over the same Predictor the CLI uses.

    POST /v1/predict   texts in, one prediction each out (auth, limits, micro-batched)
    GET  /v1/model     what is being served (auth)
    GET  /healthz      the process answers (liveness)
    GET  /readyz       the model is loaded and warmed up (readiness)
    GET  /metrics      Prometheus metrics
    GET  /docs         OpenAPI docs (schema at /openapi.json)

Order of checks on /v1/predict: framing (400: Content-Length and Transfer-Encoding together) ->
body size (413) -> failed key attempts from this address (429) -> API key (401) -> rate limit
(429) -> content type (415, also when none is sent) -> a JSON key sent twice (400) -> JSON shape,
types and limits (422) -> queue room within the timeout (503) -> prediction within the timeout
(504, or 503 if it was dropped before it ran). An image run answers /v1/predict with 422 pointing
at /v1/predict-images (serving/images.py) without reading the body.
Errors answer with a JSON `detail`, never a stack trace; unexpected ones are logged here with
theirs.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from paretune.errors import ParetuneError
from paretune.models import model_source, portable_model_name
from paretune.serving.access_log import AccessLog
from paretune.serving.auth import KeyChecker
from paretune.serving.batcher import MicroBatcher, Overloaded
from paretune.serving.framing import RequestFraming, is_json, media_type, refuse_duplicate_keys
from paretune.serving.limits import (BodySizeLimit, FailedAuthLimiter, RateLimiter, retry_after_header,
                                     text_problems)
from paretune.serving.masking import preview
from paretune.serving.metrics import MetricsMiddleware, ServerMetrics
from paretune.serving.model_pool import ModelPool, PoolOptions
from paretune.serving.settings import ServeSettings
from paretune.version import __version__

log = logging.getLogger("paretune.serve")

ROUTES = {"/v1/predict", "/v1/predict-images", "/v1/model", "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"}
ROUTES |= {"/v1/chat/completions", "/v1/completions", "/v1/models"}  # generative runs (chat_routes.py)


class PredictRequest(BaseModel):
    # Strict: "yes" is not a boolean and 1 is not a string. A client that sends the wrong type has
    # a bug, and guessing what it meant would hide it.
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"texts": ["a gripping, funny film", "john met mary in paris"], "all_scores": False}],
    })

    texts: list[str] | None = Field(None, description="Texts to label, each predicted on its own.")
    text: str | None = Field(None, description="One text (instead of texts).")
    all_scores: bool = Field(False, description="Also return every label's score (NER: every word's tag).")

    @model_validator(mode="after")
    def _one_of(self) -> "PredictRequest":
        if (self.texts is None) == (self.text is None):
            raise ValueError("give either `texts` (a list of strings) or `text` (one string)")
        return self

    def items(self) -> list[str]:
        return self.texts if self.texts is not None else [self.text or ""]


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(description=(
        "One per text, in order. Classification: label, score (and scores). Multi-label: labels. "
        "Regression: value. NER: entities with type, text, score and character offsets start/end."
    ))
    model: str = Field(description="Name of the run folder being served.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "A body that could be read two ways: a JSON key sent twice, or both Content-Length "
                        "and Transfer-Encoding."},
    401: {"description": "No valid API key (send `Authorization: Bearer <key>`)."},
    413: {"description": "Request body too large."},
    415: {"description": "The body is not sent as application/json (or has no Content-Type)."},
    422: {"description": "Malformed JSON, wrong fields or types, too many texts or a text too long."},
    429: {"description": "Rate limit for this key, or failed key attempts from this address, exceeded; "
                        "see Retry-After."},
    503: {"description": "Too many texts queued, or shutting down; retry later."},
    504: {"description": "Prediction not done within the request timeout."},
}


def create_app(predictor, settings: ServeSettings) -> FastAPI:
    info = model_info(predictor)
    metrics = ServerMetrics({k: str(info[k]) for k in ("run", "task", "method", "base_model")})
    batcher = model_runner(predictor, metrics, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()  # warms up in its thread; /readyz says when it is done
        yield
        # uvicorn has let in-flight requests finish; the queue is empty by now unless they timed out.
        await batcher.close(settings.request_timeout_s)

    # redirect_slashes=False: Starlette answers `/v1/predict/` with a redirect to an absolute URL
    # built from the Host header, which a caller controls (an open redirect); 404 instead.
    app = FastAPI(title="paretune", version=__version__, lifespan=lifespan, redirect_slashes=False, description=(
        f"Predictions of the fine-tuned run `{info['run']}` ({info['task']}). Send the API key as "
        "`Authorization: Bearer <key>`."))
    app.state.batcher, app.state.metrics = batcher, metrics
    # The last added runs first: log, count, check framing, check size, then the routes.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestFraming)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES)
    app.add_middleware(AccessLog)
    _add_error_handlers(app)
    caller = caller_check(settings)
    if predictor.task.takes_images:  # images in: multipart uploads or base64 JSON (serving/images.py)
        from paretune.serving.images import add_image_routes

        # Over HTTP an image is bytes the client sent: no client string reaches a file open, and
        # /v1/predict only says where images go.
        predictor.opens_image_paths = False
        add_image_routes(app, batcher, caller, settings, info["run"], ERROR_RESPONSES)
    else:
        _add_predict_route(app, batcher, caller, settings, info)
    if predictor.task.generates:  # OpenAI-compatible routes on the decoding engine (serving/chat_routes.py)
        from paretune.serving.chat_routes import add_chat_routes

        add_chat_routes(app, batcher, caller, settings)
    _add_status_routes(app, batcher, caller, metrics, info)
    return app


def caller_check(settings: ServeSettings):
    """The dependency that says who is asking (a key id, or the client address when auth is off),
    answering 401 and 429 itself."""
    keys = KeyChecker(settings.api_key_hashes)
    limiter = RateLimiter(settings.rate_limit, settings.burst)
    failed_logins = FailedAuthLimiter(settings.max_auth_failures)

    async def caller(request: Request) -> str:
        address = request.client.host if request.client else "unknown"
        if keys.enabled:
            blocked = failed_logins.retry_after(address)
            if blocked:
                raise HTTPException(429, "too many failed API key attempts from this address",
                                    headers={"Retry-After": retry_after_header(blocked)})
            who = keys.identify(request.headers.get("authorization"))
            if who is None:
                failed_logins.failed(address)
                raise HTTPException(401, "missing or invalid API key: send `Authorization: Bearer <key>`",
                                    headers={"WWW-Authenticate": "Bearer"})
        else:
            who = f"client-{address}"
        wait = limiter.retry_after(who)
        if wait:
            raise HTTPException(429, f"rate limit of {settings.rate_limit:g} requests/s exceeded",
                                headers={"Retry-After": retry_after_header(wait)})
        return who

    return caller


def _add_predict_route(app: FastAPI, batcher, caller, settings: ServeSettings, info: dict[str, Any]) -> None:
    @app.post("/v1/predict", response_model=PredictResponse, responses=ERROR_RESPONSES,
              openapi_extra=_request_body(PredictRequest))
    async def predict(request: Request, who: str = Depends(caller)) -> PredictResponse:
        """Label one or many texts. Concurrent requests are batched together for the model."""
        with batcher.incoming():  # the batcher waits for this request's texts while it is parsed
            future = await _submit(request, who)
        try:
            predictions = await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
        except asyncio.TimeoutError:
            message = f"prediction took longer than {settings.request_timeout_s:g} s"
            raise HTTPException(504, message) from None
        except Overloaded as err:  # dropped from the queue: it could not be done in time
            raise _busy(err) from None
        return PredictResponse(predictions=predictions, model=info["run"])

    async def _submit(request: Request, who: str):
        # The body is parsed here, after the key check, so unauthenticated callers learn nothing.
        sent_as = media_type(request.headers)
        if not is_json(sent_as):  # a body without a Content-Type is not guessed to be JSON
            raise HTTPException(415, "the body must be JSON sent as `Content-Type: application/json`, not "
                                     + (repr(sent_as[:100]) if sent_as else "without a Content-Type"))
        body = await request.body()
        refuse_duplicate_keys(body)  # 400: a key sent twice could be read two ways
        try:
            payload = PredictRequest.model_validate_json(body)
        except ValidationError as err:
            raise HTTPException(422, validation_problems(err)) from None
        texts = payload.items()
        problems = text_problems(texts, settings.max_texts, settings.max_chars)
        if problems:
            raise HTTPException(422, problems)
        if settings.log_inputs:
            log.info("%s sent %d text(s): %s", who, len(texts),
                     json.dumps(preview(texts, settings.mask_inputs), ensure_ascii=False))
        try:
            return batcher.submit(texts, payload.all_scores)
        except Overloaded as err:
            raise _busy(err) from None


def _add_status_routes(app: FastAPI, batcher, caller, metrics: ServerMetrics, info: dict[str, Any]) -> None:
    @app.get("/v1/model", responses={401: ERROR_RESPONSES[401]})
    async def model(_: str = Depends(caller)) -> dict[str, Any]:
        """The run being served: task, labels, fine-tuning method, base model, max tokens."""
        return info

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (the model may still be warming up)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Warming up, or warm-up failed."}})
    async def readyz() -> JSONResponse:
        """Readiness: the model is loaded and a warm-up prediction has run."""
        if batcher.ready.is_set():
            return JSONResponse({"status": "ready", "model": info["run"]})
        if batcher.warm_up_error:
            return JSONResponse({"status": "failed", "detail": batcher.warm_up_error}, status_code=503)
        if getattr(batcher, "lost", False):  # model processes: every one died or was stuck
            return JSONResponse({"status": "unavailable", "detail": "no model process can answer; a new one is "
                                 "starting"}, status_code=503)
        return JSONResponse({"status": "warming up"}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text format."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def model_runner(predictor, metrics: ServerMetrics, settings: ServeSettings) -> MicroBatcher | ModelPool:
    """Model processes fed through a queue (model_pool.py), or a thread of this process (batcher.py)."""
    if predictor.task.generates:  # the decoding engine: continuous batching, per-step deadlines
        from paretune.serving.chat_runner import ChatRunner

        return ChatRunner(predictor, metrics, settings)
    processes = model_processes(predictor, settings)
    if processes == 0:
        return MicroBatcher(predictor, metrics, max_batch_size=settings.max_batch_size,
                            max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.max_queue,
                            timeout_s=settings.request_timeout_s)
    return ModelPool(PoolOptions(
        run_dir=predictor.run_dir, processes=processes, threads=settings.model_threads, nice=settings.model_nice,
        device=settings.device,
        trust_remote_code=settings.trust_remote_code, engine=settings.engine,
        max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
        timeout_s=settings.request_timeout_s, predictor=predictor), metrics)


def model_processes(predictor, settings: ServeSettings) -> int:
    """How many model processes: the setting, or one per CPU core on a CPU (0 on a GPU, with
    `--workers` above 1, and for image and generative tasks, whose inputs stay in this process)."""
    task = predictor.task
    if task.takes_images or task.generates:
        return 0
    if settings.model_processes is not None:
        return settings.model_processes
    if str(predictor.device) != "cpu" or settings.workers > 1:
        return 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _busy(err: Overloaded) -> HTTPException:
    return HTTPException(503, f"busy: {err}; retry shortly",
                         headers={"Retry-After": retry_after_header(err.retry_after_s)})


def model_info(predictor) -> dict[str, Any]:
    """What /v1/model and the model_info metric say about the run being served."""
    from paretune.run_folder import TASK_FILE, RunFolder

    run = RunFolder(predictor.run_dir)
    task_file = run.model_dir / TASK_FILE
    saved = json.loads(task_file.read_text()) if task_file.is_file() else {}
    config = run.read_config()
    return {
        "run": run.path.name,
        "task": predictor.task.name,
        "labels": list(predictor.task.label_names),
        "method": saved.get("method", config.method.name),
        "base_model": portable_model_name(model_source(config.model, config.task)),  # a task's default too
        "max_length": predictor.max_length,
    }


_EXPECTED = {"bool_type": "must be true or false (a JSON boolean, not a string or number)",
             "string_type": "must be a JSON string", "list_type": "must be a JSON array of strings"}


def validation_problems(err: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as 422 details like text_problems': where (under "body") and what is wrong."""
    problems = []
    for problem in err.errors(include_url=False, include_input=False, include_context=False):
        problems.append({"loc": ["body", *problem["loc"]],
                         "msg": _EXPECTED.get(problem["type"], problem["msg"]), "type": problem["type"]})
    return problems


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ParetuneError)
    async def user_error(request: Request, err: ParetuneError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return JSONResponse({"detail": "internal server error (details are in the server log)"},
                            status_code=500)


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI text for a body the handler parses itself (so auth runs before parsing)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema()}}}}

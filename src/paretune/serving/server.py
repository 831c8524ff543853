"""Start uvicorn on a run folder: the model is loaded before the socket opens, so a broken run fails
at start with a clear message, not at the first request.

Connections are handled by uvicorn's h11 protocol with two bounds of its own (BoundedH11Protocol):
a client has `read_timeout_s` to send each request's headers and body, and the connection limit
counts requests being handled, not connections still sending headers, with the health routes
answered past it. A few clients that open connections and never finish their headers (slowloris)
once held every slot for as long as they liked, and /healthz answered 503 with the rest.

One process (the default) serves the app built here. With `workers > 1`, uvicorn starts that many
processes which each build the app with `app_from_environment` from settings passed in the
environment (API keys only as digests), and Prometheus metrics are summed across them.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import tempfile
from pathlib import Path

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from paretune.serving.chat_adapters import load_adapter_runs_checked
from paretune.serving.loading import load_predictor
from paretune.serving.settings import ServeSettings

log = logging.getLogger("paretune.serve")

ENV_RUN, ENV_SETTINGS = "PARETUNE_SERVE_RUN", "PARETUNE_SERVE_SETTINGS"
HEALTH_ROUTES = ("/healthz", "/readyz")  # answered past the request limit: a probe must get through
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
              b"content-length: %d\r\n\r\n%s")


class Server(uvicorn.Server):
    """uvicorn's server, except that a stop asked for by SIGTERM/SIGINT exits with status 0.

    uvicorn re-raises the signal after its graceful shutdown, so the process dies "killed by
    SIGTERM" even though every request was answered; supervisors read that as a crash. An
    orderly stop on request is a clean exit.
    """

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            getattr(self, "_captured_signals", []).clear()  # handled here: uvicorn need not re-raise


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 connection, with a deadline to read each request and a limit on requests.

    The read deadline starts when the connection opens, and again when a response is done (the
    next request's turn), and ends once the request's headers and body are all in. Past it, a
    client still sending headers gets 408 and the connection is closed; one still sending its
    body is cut off (the app sees a disconnect). uvicorn's own limit counts every open connection,
    finished headers or not, and answers 503 to everything past it, /healthz included; this one
    counts requests being handled and lets the health routes through.
    """

    def __init__(self, *args, read_timeout_s: float, max_requests: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # counted by _limited instead
        self.app = _limited(self.app, self.tasks, max_requests)
        self.read_timeout_s = read_timeout_s
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_read_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm_read_deadline()  # the whole request is in (or the connection is ending)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_read_deadline()  # the next request, pipelined or not, has the same time

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # still sending headers
            detail = json.dumps({"detail": f"request not received within {self.read_timeout_s:g} s"})
            self.transport.write(_TIMED_OUT % (len(detail), detail.encode()))
        log.info("closed a connection that took more than %g s to send its request", self.read_timeout_s)
        self.transport.close()


def _limited(app, tasks: set, max_requests: int):
    """The app, answering 503 while more than `max_requests` requests are being handled (this one
    included), except on the health routes."""
    async def limited(scope, receive, send):
        if len(tasks) > max_requests and scope["type"] == "http" and scope["path"] not in HEALTH_ROUTES:
            body = json.dumps({"detail": f"busy: more than {max_requests} requests at once; retry shortly"})
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", b"1"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await app(scope, receive, send)

    return limited


def uvicorn_options(settings: ServeSettings) -> dict:
    """Keyword arguments for uvicorn.Config / uvicorn.run."""
    return {
        "host": settings.host, "port": settings.port,
        # h11 even where httptools is installed: it refuses ambiguous framing and oversized headers
        # that httptools lets through (tests/test_serve_abuse.py). A partial, so it pickles for
        # `--workers N`.
        "http": functools.partial(BoundedH11Protocol, read_timeout_s=settings.read_timeout_s,
                                  max_requests=settings.max_connections),
        "log_config": None,  # keep paretune's logging set-up; uvicorn's loggers propagate into it
        "server_header": False,  # do not advertise the server software and version
        "access_log": False,  # it logs query strings; access_log.AccessLog logs requests instead
        # On SIGTERM/SIGINT uvicorn stops accepting, then waits this long for open requests.
        "timeout_graceful_shutdown": int(settings.request_timeout_s) + 5,
        "ssl_certfile": settings.ssl_certfile, "ssl_keyfile": settings.ssl_keyfile,
    }


def load_runs(run_dir: Path | list[Path], device: str | None, trust_remote_code: bool):
    """One run's Predictor, or several LoRA runs over one shared base (serving/chat_adapters.py)."""
    run_dirs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if len(run_dirs) == 1:
        return load_predictor(run_dirs[0], device, trust_remote_code)
    return load_adapter_runs_checked(run_dirs, device)


def serve(run_dir: Path | list[Path], settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish first."""
    from paretune.serving.app import create_app

    if not settings.api_key_hashes:
        log.warning("no API keys given: anyone who can reach %s:%d may use the model",
                    settings.host, settings.port)
    # One run, or several LoRA runs over one base (serving/chat_adapters.py); checked before workers start.
    predictor = load_runs(run_dir, settings.device, settings.trust_remote_code)  # fails here, before workers start
    scheme = "https" if settings.ssl_certfile else "http"
    log.info("serving %s on %s://%s:%d (docs at /docs)", run_dir, scheme, settings.host, settings.port)
    if settings.workers == 1:
        Server(uvicorn.Config(create_app(predictor, settings), **uvicorn_options(settings))).run()
        return
    del predictor  # each worker loads its own copy
    run_dirs = [run_dir] if isinstance(run_dir, (str, Path)) else run_dir
    os.environ[ENV_RUN] = os.pathsep.join(str(Path(d).resolve()) for d in run_dirs)
    os.environ[ENV_SETTINGS] = settings.model_dump_json()
    with tempfile.TemporaryDirectory(prefix="paretune-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by prometheus_client in each worker
        uvicorn.run("paretune.serving.server:app_from_environment", factory=True,
                    workers=settings.workers, **uvicorn_options(settings))


def app_from_environment():
    """The app of one worker process (`--workers N`), from what `serve` put in the environment."""
    from paretune.logs import setup_logging
    from paretune.serving.app import create_app

    setup_logging()
    settings = ServeSettings.model_validate_json(os.environ[ENV_SETTINGS])
    return create_app(load_runs([Path(p) for p in os.environ[ENV_RUN].split(os.pathsep)], settings.device,
                                settings.trust_remote_code),
                      settings)

"""Start uvicorn on a run folder: the model is loaded before the socket opens, so a broken run fails
at start with a clear message, not at the first request.

One process (the default) serves the app built here. With `workers > 1`, uvicorn starts that many
processes which each build the app with `app_from_environment` from settings passed in the
environment (API keys only as digests), and Prometheus metrics are summed across them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import uvicorn

from paretune.serving.chat_adapters import load_adapter_runs_checked
from paretune.serving.loading import load_predictor
from paretune.serving.settings import ServeSettings

log = logging.getLogger("paretune.serve")

ENV_RUN, ENV_SETTINGS = "PARETUNE_SERVE_RUN", "PARETUNE_SERVE_SETTINGS"


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


def uvicorn_options(settings: ServeSettings) -> dict:
    """Keyword arguments for uvicorn.Config / uvicorn.run."""
    return {
        "host": settings.host, "port": settings.port,
        # h11 even where httptools is installed: it refuses ambiguous framing and oversized headers
        # that httptools lets through (tests/test_serve_abuse.py).
        "http": "h11",
        "log_config": None,  # keep paretune's logging set-up; uvicorn's loggers propagate into it
        "server_header": False,  # do not advertise the server software and version
        "access_log": False,  # it logs query strings; access_log.AccessLog logs requests instead
        "limit_concurrency": settings.max_connections,
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

"""Prometheus metrics: requests by route and status, latency, in-flight requests, batch sizes, model info.

Each app gets its own registry (so several servers in one process, as in tests, do not clash).
With several worker processes (`--workers N`), prometheus_client's multiprocess mode adds up
every worker's numbers: `paretune serve` sets PROMETHEUS_MULTIPROC_DIR before the workers start.
"""
from __future__ import annotations

import os
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServerMetrics:
    def __init__(self, model_labels: dict[str, str]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("paretune_requests", "HTTP requests by route and status code.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("paretune_request_duration_seconds", "Time from request to response.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("paretune_requests_in_flight", "Requests being handled now.",
                               registry=r, multiprocess_mode="livesum")
        self.batch_size = Histogram("paretune_batch_size", "Texts per forward pass of the model.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("paretune_batch_requests", "Requests sharing one forward pass.",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.queue_wait = Histogram("paretune_queue_wait_seconds", "Time a request waits for the model.",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("paretune_inference_seconds", "Time of one batched prediction.",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("paretune_predictions", "Texts predicted.", registry=r)
        self.ready = Gauge("paretune_ready", "1 once the model is loaded and warmed up.",
                           registry=r, multiprocess_mode="min")
        # An Info metric would say this, but multiprocess mode has no Info: a constant gauge does.
        info = Gauge("paretune_model_info", "The run being served.", list(model_labels),
                     registry=r, multiprocess_mode="max")
        info.labels(**model_labels).set(1)

    def render(self) -> tuple[bytes, str]:
        registry = self.registry
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request and counting it by route and final status.

    Outermost, so refusals made by other middleware (413) and by dependencies (401, 429) count too.
    Unknown paths share one label so scanners cannot blow up the number of series.
    """

    def __init__(self, app, metrics: ServerMetrics, routes: set[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"

        def answered(status: int, seconds: float) -> None:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)

        self.metrics.in_flight.inc()
        await call_and_record(self.app, scope, receive, send, answered)


async def call_and_record(app, scope, receive, send, answered) -> None:
    """Run an ASGI app, then call `answered(status, seconds)` however the request ended."""
    status = 500  # if the app dies before answering, that is what the client sees
    started = time.perf_counter()

    async def recording_send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, recording_send)
    finally:
        answered(status, time.perf_counter() - started)

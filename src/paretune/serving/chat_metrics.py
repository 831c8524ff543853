"""Prometheus metrics of the decoding engine: time to first token, time between tokens, generated
tokens (and their rate), running and queued sequences, rows per decode step.

Registered in the server's own registry (serving/metrics.py), so /metrics shows them beside the
request counts. The engine calls these from its thread; prometheus_client is thread-safe.
"""
from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import Counter, Gauge, Histogram

from paretune.inference.engine import EngineObserver
from paretune.serving.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, ServerMetrics

TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
RATE_WINDOW_S = 10.0  # generated tokens/s is measured over the last ten seconds


class EngineMetrics(EngineObserver):
    def __init__(self, metrics: ServerMetrics):
        r = metrics.registry
        self.ttft = Histogram("paretune_time_to_first_token_seconds", "From a request's arrival to its first "
                              "generated token.", buckets=LATENCY_BUCKETS, registry=r)
        self.gap = Histogram("paretune_inter_token_latency_seconds", "Time between two tokens of one answer.",
                             buckets=TOKEN_GAP_BUCKETS, registry=r)
        self.generated = Counter("paretune_generated_tokens", "Tokens generated.", registry=r)
        self.rate = Gauge("paretune_generated_tokens_per_second", "Tokens generated per second over the "
                          f"last {RATE_WINDOW_S:g} s.", registry=r, multiprocess_mode="livesum")
        self.running = Gauge("paretune_sequences_running", "Sequences in the decode batch.",
                             registry=r, multiprocess_mode="livesum")
        self.waiting = Gauge("paretune_sequences_queued", "Sequences waiting to join the batch.",
                             registry=r, multiprocess_mode="livesum")
        self.step_rows = Histogram("paretune_decode_batch_size", "Sequences in one decode step.",
                                   buckets=BATCH_BUCKETS, registry=r)
        self.step_s = Histogram("paretune_decode_step_seconds", "Time of one engine step.",
                                buckets=LATENCY_BUCKETS, registry=r)
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def step(self, rows: int, seconds: float) -> None:
        if rows:
            self.step_rows.observe(rows)
        self.step_s.observe(seconds)

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def token_gap(self, seconds: float) -> None:
        self.gap.observe(seconds)

    def tokens(self, count: int) -> None:
        self.generated.inc(count)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, count))
            while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            self.rate.set(sum(n for _, n in self._recent) / RATE_WINDOW_S)

    def sizes(self, running: int, waiting: int) -> None:
        self.running.set(running)
        self.waiting.set(waiting)

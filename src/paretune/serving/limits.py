"""What one caller may send: body size (413), texts per request and characters per text (422),
requests per second per key (429), failed API key attempts per client address (429)."""
from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass


class BodySizeLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, before the app reads it into memory.

    A declared Content-Length is refused at once; a body without one (chunked) is read here up to
    the limit and handed on whole, or refused once it passes it.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            if declared.isdigit() and int(declared) <= DRAIN_BYTES:
                await _drain(receive)
            return await _too_large(send, self.max_bytes)
        if declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # No declared length (chunked): read it here, up to the limit, before the app sees it.
            body, more = await _read_up_to(receive, self.max_bytes)
            if more:
                await _drain(receive)  # answered only once the client stopped sending: no reset
                return await _too_large(send, self.max_bytes)
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


async def _read_up_to(receive, max_bytes: int) -> tuple[bytes, bool]:
    """The body's first max_bytes, and whether there is more than that."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), False
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > max_bytes:
            return b"", True
        if not message.get("more_body", False):
            return b"".join(parts), False


def _replay(body: bytes, receive):
    """A receive that gives the app the body read already, then passes on (e.g. a disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send, max_bytes: int) -> None:
    body = json.dumps({"detail": f"request body is larger than {max_bytes} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


DRAIN_BYTES, DRAIN_SECONDS = 1 << 20, 2.0


async def _drain(receive) -> None:
    """Read and drop what the client is still sending (up to 1 MiB, 2 s) before answering 413.

    Closing a socket with unread data in it makes the kernel send a reset, and a client that is
    still writing its body then sees "connection reset" instead of our 413. The server stops
    reading once it has answered, so the rest is read first. Bounded, so a client cannot keep us
    reading: a body declared larger than the bound is refused at once.
    """
    import asyncio

    async def read_rest() -> None:
        drained = 0
        while drained < DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    try:
        await asyncio.wait_for(read_rest(), DRAIN_SECONDS)
    except asyncio.TimeoutError:
        return


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: `rate` requests a second on average, up to `burst` at once.

    Written out rather than taken from a library (slowapi, limits) because it is twenty lines,
    in-memory per process, and needs no storage backend. Runs on the event loop only, so no lock.
    """

    max_callers = 10_000  # buckets kept before full (idle) ones are dropped

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def retry_after(self, caller: str) -> float:
        """0 if `caller` may go ahead now (and charge one request), else seconds until it may."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self.max_callers:
                self._forget_idle(now)
            bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        # A bucket that has refilled is the same as a new one: dropping it loses nothing.
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for caller in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[caller]


class FailedAuthLimiter:
    """At most `max_failures` failed API key attempts per client address in any `window_s`.

    Past that, the address gets 429 until its oldest counted failure ages out, whatever key it
    sends: a right key must not be told apart from a wrong one while guessing is throttled. Keeps
    only the last `max_failures` times per address, so memory is bounded by addresses x limit.
    Runs on the event loop only, so no lock.
    """

    max_clients = 10_000

    def __init__(self, max_failures: int, window_s: float = 60.0, clock=time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float:
        """0 if `client` may try a key now, else seconds until it may."""
        times = self._failures.get(client)
        if not self.max_failures or times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window_s - self.clock())

    def failed(self, client: str) -> None:
        if not self.max_failures:
            return
        now = self.clock()
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._forget_old(now)
        self._failures.setdefault(client, deque(maxlen=self.max_failures)).append(now)

    def _forget_old(self, now: float) -> None:
        old = [c for c, times in self._failures.items() if times[-1] + self.window_s <= now]
        for client in old or list(self._failures)[: len(self._failures) // 2]:
            del self._failures[client]


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def text_problems(texts: list[str], max_texts: int, max_chars: int) -> list[dict]:
    """Why these texts cannot be served, as FastAPI-style 422 details (empty list: fine)."""
    if not texts:
        return [{"loc": ["body", "texts"], "msg": "give at least one text"}]
    if len(texts) > max_texts:
        return [{"loc": ["body", "texts"],
                 "msg": f"{len(texts)} texts in one request; the limit is {max_texts}: split the request"}]
    problems = []
    for i, text in enumerate(texts):
        if not text.strip():
            problems.append({"loc": ["body", "texts", i], "msg": "text is empty"})
        elif len(text) > max_chars:
            problems.append({"loc": ["body", "texts", i],
                             "msg": f"text has {len(text)} characters; the limit is {max_chars}"})
    return problems

"""The abuse suite of `paretune serve`'s model processes and connections (serving/model_pool.py,
serving/server.py): probes that once took a server down for good, kept here so they stay fixed.

- a batch larger than the pipe to a model process (it wedged the process forever);
- a model process killed (SIGKILL) or stopped (SIGSTOP) under a request;
- connections that never finish their headers (they held every connection slot).

One live server with one model process serves the model-process probes; the fork server is
shared by the whole test session, so a process starts in about a second.
"""
from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from test_serve import KEY, TEXTS, cls_run, folder, predictor, running, settings, wait_for  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TIMEOUT_S = 2.0  # a stuck model process is noticed within this (plus a grace second)
# 320 KB in one message, more than a pipe holds (~200 KB); mostly spaces, so quick to tokenize.
LONG_TEXTS = [f"text {i}" + " " * 9990 for i in range(32)]


def model_children() -> list[psutil.Process]:
    """The model processes: children of the fork server, which is a child of this process."""
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if p.parent().pid != me.pid and p.is_running()]


def post(url: str, body: dict, timeout: float = 10.0) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=timeout)


def ready(url: str) -> bool:
    return httpx.get(f"{url}/readyz", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def pooled_server(predictor):
    """(URL, uvicorn server) with one model process and a short timeout, taking long texts."""
    options = settings(model_processes=1, engine="torch", request_timeout_s=TIMEOUT_S, max_texts=32,
                       max_chars=10_000, max_body_bytes=1 << 20, log_inputs=False)
    with running(predictor, options, wait_ready=False) as (url, server):
        wait_for(lambda: ready(url), timeout=120)  # the first start imports torch in the fork server
        yield url, server


@pytest.fixture
def pooled(pooled_server) -> str:
    return pooled_server[0]


def served_again(url: str, within_s: float = 60.0) -> httpx.Response:
    """The first 200 once the server has a working model process again (503s meanwhile)."""
    deadline = time.monotonic() + within_s
    while True:
        answer = post(url, {"texts": TEXTS[:1]})
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        assert answer.status_code == 503, answer.text
        time.sleep(0.2)


def test_a_batch_larger_than_the_pipe_reaches_the_model_process_whole(pooled):
    # The event loop (uvloop) had made the pipe non-blocking: a batch larger than the pipe holds,
    # sent while the model process was slow to read (a loaded machine), went in part, the error
    # was swallowed, and the process waited for the rest forever (every later request 504).
    (child,) = model_children()
    child.suspend()  # slow to read: the pipe fills
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(post, pooled, {"texts": LONG_TEXTS})
        time.sleep(0.5)
        child.resume()
        assert answer.result().status_code == 200, answer.result().text
    assert len(answer.result().json()["predictions"]) == len(LONG_TEXTS)
    assert post(pooled, {"texts": LONG_TEXTS}).status_code == 200
    assert post(pooled, {"texts": TEXTS[:2]}).status_code == 200


def test_a_killed_model_process_is_noticed_and_replaced(pooled):
    (child,) = model_children()
    child.kill()
    child.wait(10)
    wait_for(lambda: not ready(pooled), timeout=5)  # no process can answer: not ready
    status = httpx.get(f"{pooled}/readyz", timeout=5).json()["status"]
    assert status in ("unavailable", "ready"), status  # says the model is lost, not "warming up" (or is back)
    answer = served_again(pooled)
    assert answer.status_code == 200, answer.text
    assert ready(pooled)
    (replacement,) = model_children()
    assert replacement.pid != child.pid


def test_a_stuck_model_process_is_killed_and_replaced(pooled):
    (child,) = model_children()
    child.send_signal(signal.SIGSTOP)  # alive, holding its pipe, answering nothing
    try:
        started = time.monotonic()
        answer = post(pooled, {"texts": TEXTS[:2]})
        assert answer.status_code in (503, 504), answer.text  # a clean answer, not a hang
        assert time.monotonic() - started < TIMEOUT_S + 2
        child.wait(TIMEOUT_S + 5)  # killed once its batch is past every caller's deadline
    finally:
        if child.is_running():
            child.send_signal(signal.SIGCONT)
    answer = served_again(pooled)
    assert answer.status_code == 200, answer.text
    (replacement,) = model_children()
    assert replacement.pid != child.pid


def test_a_stopped_server_stops_a_stuck_model_process(pooled_server):
    """What SIGTERM asks of uvicorn (should_exit) ends the server even with its model process
    stuck under a request (the last test of the module: it stops the module's server)."""
    url, server = pooled_server
    serving = next(t for t in threading.enumerate() if getattr(t, "_target", None) == server.run)
    (child,) = model_children()
    child.suspend()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(post, url, {"texts": TEXTS[:1]})
        time.sleep(0.3)
        stopped = time.monotonic()
        server.should_exit = True
        assert answer.result().status_code in (503, 504)
    serving.join(2 * TIMEOUT_S + 10)
    assert not serving.is_alive() and time.monotonic() - stopped < 2 * TIMEOUT_S + 10
    child.wait(5)  # killed, not left behind


# --- connections that never finish their request ------------------------------------------------

READ_TIMEOUT_S = 1.0


def slow_connections(port: int, count: int, request: bytes) -> list[socket.socket]:
    """`count` connections that send `request` (an unfinished one) and then nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def received(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_connections_that_never_finish_their_request_are_cut_off_and_block_nothing(predictor):
    options = settings(max_connections=4, read_timeout_s=READ_TIMEOUT_S)
    with running(predictor, options) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        headers_only = slow_connections(port, 6, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        body_short = slow_connections(port, 2, (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                                f"Bearer {KEY}\r\nContent-Type: application/json\r\n"
                                                "Content-Length: 100\r\n\r\n{\"texts\": ").encode())
        started = time.monotonic()
        # More unfinished connections than the limit: health probes and requests still get in.
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        assert post(url, {"texts": TEXTS[:1]}).status_code == 200
        for sock in headers_only:  # cut off once their time is up
            assert received(sock).startswith(b"HTTP/1.1 408 ")
        for sock in body_short:
            received(sock)  # closed: the app saw a disconnect
        assert time.monotonic() - started < READ_TIMEOUT_S + 2
        for sock in headers_only + body_short:
            sock.close()


def test_past_the_request_limit_health_routes_answer_and_the_rest_get_503(predictor):
    """Requests being handled (not connections) count against --max-connections."""
    from paretune.serving.server import _limited

    async def scenario():
        sent = []

        async def app(scope, receive, send):
            sent.append(scope["path"])

        async def send(message):
            sent.append(message.get("status", "body"))

        limited = _limited(app, tasks={1, 2, 3}, max_requests=2)
        for path in ("/healthz", "/readyz", "/v1/predict"):
            await limited({"type": "http", "path": path}, None, send)
        return sent

    assert asyncio.run(scenario()) == ["/healthz", "/readyz", 503, "body"]

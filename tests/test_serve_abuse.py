"""What a hostile or careless caller can do to `paretune serve`, tried against one real server.

One `paretune serve` process (through tests/serve_slowly.py, which makes each forward pass take
DELAY_S, so the server has a known capacity whatever else the machine is doing) on a loopback
port, over a tiny trained run, shared by every test here. Tests that must not disturb the others
speak from their own loopback source address (127.0.0.x: per-address limits are per address).
The last test stops the server with SIGTERM under load.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import sentiment_rows, write_csv

import paretune
from paretune.models import portable_model_name

KEY = "abuse-test-key-0123456789abcdef"
DELAY_S = 0.1  # per forward pass: capacity is 10 batches/s whatever the CPU is doing
MAX_BATCH, MAX_TEXTS, MAX_CHARS, MAX_BODY, TIMEOUT_S = 8, 16, 1000, 65536, 1.0
AUTH_FAILURES = 10  # 401s one address may collect per minute before it gets 429
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("abuse")
    return paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(32, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(8, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 2, "batch_size": 16, "seed": 7, "save_every": 10_000},
        "output": {"dir": str(folder / "run")},
    }).path


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    log = tmp_path_factory.mktemp("abuse-log") / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PARETUNE_API_KEYS": KEY,
           "PARETUNE_TEST_DELAY_S": str(DELAY_S)}
    options = ["--port", str(port), "--max-batch-size", str(MAX_BATCH), "--max-queue", "256",
               "--timeout", str(TIMEOUT_S), "--max-texts", str(MAX_TEXTS), "--max-chars", str(MAX_CHARS),
               "--max-body-bytes", str(MAX_BODY), "--rate-limit", "0",
               "--max-auth-failures", str(AUTH_FAILURES),
               # The model in the server process: serve_slowly.py slows the Predictor loaded there.
               "--model-processes", "0"]
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(HERE / "serve_slowly.py"), str(tiny_run), *options],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Server(process, port, log)
    try:
        deadline = time.monotonic() + 120
        while not _ready(running):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _ready(server: Server) -> bool:
    try:
        return httpx.get(f"{server.url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def post(server: Server, body=None, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(f"{server.url}/v1/predict", json=body, headers=headers, timeout=10, **kwargs)


def raw_exchange(port: int, request: bytes, wait_s: float = 3.0) -> tuple[bytes, bool]:
    """Send raw bytes; return everything the server sent and whether it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        received = b""
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # it answered and closed before reading all
            pass
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except socket.timeout:
            return received, False
        except ConnectionResetError:
            pass
        return received, True


def status_codes(received: bytes) -> list[int]:
    return [int(line.split()[1]) for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from another loopback address (127.0.0.0/8 is all loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


# --- who may call ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": ""}, {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong-key-0123456789abcdef"}, {"Authorization": f"Basic {KEY}"},
    {"Authorization": KEY}, {"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}x"},
    {"Authorization": f"Bearer {KEY[:-1]}"},
], ids=["missing", "empty", "scheme-only", "wrong", "basic", "no-scheme", "x-api-key",
        "longer", "shorter"])
def test_requests_without_a_valid_bearer_key_get_401(server, headers):
    with from_address("127.0.0.2") as client:  # many 401s: keep them off the shared address
        answer = client.post(f"{server.url}/v1/predict", json={"texts": ["a fine film"]}, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert KEY not in answer.text


def test_bearer_scheme_is_case_insensitive(server):
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert post(server, {"texts": ["a fine film"]}, key=None,
                    headers={"Authorization": f"{scheme} {KEY}"}).status_code == 200


def test_a_key_in_the_query_string_is_refused_and_never_logged(server):
    with from_address("127.0.0.3") as client:
        refused = client.post(f"{server.url}/v1/predict?api_key={KEY}", json={"texts": ["a fine film"]})
        assert refused.status_code == 401
        assert client.get(f"{server.url}/v1/model?key={KEY}").status_code == 401
        assert client.get(f"{server.url}/healthz?token={KEY}").status_code == 200
    time.sleep(0.3)  # let the server flush its log
    logged = server.log.read_text()
    assert "/v1/predict" in logged  # requests are logged, ...
    assert KEY not in logged and "api_key=" not in logged  # ... their query strings are not


def test_failed_logins_from_one_address_are_limited(server):
    with from_address("127.0.0.4") as client:
        codes = [client.post(f"{server.url}/v1/predict", json={"texts": ["x"]},
                             headers={"Authorization": f"Bearer guess-{i:020d}"}).status_code
                 for i in range(AUTH_FAILURES + 2)]
        assert codes[:AUTH_FAILURES] == [401] * AUTH_FAILURES and codes[AUTH_FAILURES:] == [429, 429]
        # Locked out: even the right key gets 429 now, so guessing learns nothing more.
        blocked = client.post(f"{server.url}/v1/predict", json={"texts": ["x"]},
                              headers={"Authorization": f"Bearer {KEY}"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    with from_address("127.0.0.5") as other:  # other addresses are not affected
        assert other.post(f"{server.url}/v1/predict", json={"texts": ["x"]},
                          headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


# --- bodies ---------------------------------------------------------------------------------


def test_wrong_types_are_not_coerced(server):
    for body, field in (({"texts": ["x"], "all_scores": "yes"}, "all_scores"),
                        ({"texts": ["x"], "all_scores": 1}, "all_scores"),
                        ({"texts": [1, 2]}, "texts"), ({"text": 5}, "text"), ({"texts": "x"}, "texts")):
        answer = post(server, body)
        assert answer.status_code == 422, body
        problems = answer.json()["detail"]
        assert any(field in problem["loc"] for problem in problems), problems
    assert post(server, {"texts": ["x"], "all_scores": True}).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_bodies_that_are_not_json_get_415(server, content_type):
    answer = post(server, key=KEY, content=json.dumps({"texts": ["x"]}).encode(),
                  headers={"Content-Type": content_type})
    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["detail"]


@pytest.mark.parametrize("raw", [
    b'{"texts": ["unclosed', b"\xff\xfe{}", b'{"texts": ["\xff\xfe bad utf-8"]}',
    b'{"texts": [' + b"[" * 5000 + b"]" * 5000 + b"]}", b'{"texts": ["a"], "texts": ["b"], "x": 1}',
    b'{"texts": ["\\ud800 lone surrogate"]}', b"[]", b"null",
], ids=["unclosed", "bom-garbage", "bad-utf8", "deeply-nested", "extra-field", "lone-surrogate",
        "array", "null"])
def test_malformed_bodies_get_4xx_not_500(server, raw):
    answer = post(server, content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert "Traceback" not in answer.text


def test_size_limits(server):
    assert post(server, {"texts": ["x"] * (MAX_TEXTS + 1)}).status_code == 422
    assert post(server, {"texts": ["a" for _ in range(MAX_BODY // 6)]}).status_code in (413, 422)
    assert post(server, {"texts": ["y" * (MAX_CHARS + 1)]}).status_code == 422
    assert post(server, {"texts": ["z" * (MAX_BODY + 1)]}).status_code == 413
    # An unauthenticated caller with a huge body is stopped before it is read.
    assert post(server, {"texts": ["z" * (MAX_BODY + 1)]}, key=None).status_code == 413


def test_chunked_body_over_the_limit_gets_413(server):
    chunk = b"a" * 8192
    stream = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 2))
    request = (b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
               + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b'7\r\n{"texts\r\n' + stream + b"0\r\n\r\n")
    received, _ = raw_exchange(server.port, request)
    assert status_codes(received)[:1] == [413]


# --- HTTP framing ---------------------------------------------------------------------------


def _smuggling_request(framing: bytes) -> bytes:
    body = json.dumps({"texts": ["x"]}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    smuggled = b"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    return (b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Type: application/json\r\n" + framing + b"\r\n" + chunked + smuggled)


@pytest.mark.parametrize("framing", [
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 200\r\n",
    b"Content-Length: 4\r\nContent-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
], ids=["cl-then-te", "te-then-cl", "two-lengths", "two-te", "te-gzip"])
def test_ambiguous_framing_is_refused_and_the_connection_closed(server, framing):
    received, closed = raw_exchange(server.port, _smuggling_request(framing))
    codes = status_codes(received)
    assert codes and 400 <= codes[0] < 600 and codes[0] != 413, received[:300]
    assert len(codes) == 1, f"a second (smuggled) request was answered: {codes}"
    assert closed, "the connection was kept open"


def test_headers_too_large_are_refused(server):
    received, closed = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                                    + b"b" * 200_000 + b"\r\n\r\n")
    assert status_codes(received)[:1] in ([400], [431], []) and closed


# --- unauthenticated routes -----------------------------------------------------------------


def test_open_routes_show_no_local_paths(server, tiny_model_dir, tiny_run):
    metrics = httpx.get(f"{server.url}/metrics").text
    info = [line for line in metrics.splitlines() if line.startswith("paretune_model_info")]
    assert info and f'base_model="{portable_model_name(str(tiny_model_dir))}"' in info[0], info
    for route in ("/metrics", "/readyz", "/healthz", "/openapi.json", "/docs"):
        text = httpx.get(f"{server.url}{route}").text
        assert str(tiny_model_dir) not in text and str(tiny_run) not in text, route
        assert str(Path.home()) not in text and "/tmp/" not in text, route
    model = httpx.get(f"{server.url}/v1/model", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert model["base_model"] == portable_model_name(str(tiny_model_dir))


# --- overload and shutdown (last: they keep the server busy, then stop it) -------------------


def test_overload_is_shed_fast_while_capacity_is_served(server):
    """16 closed-loop clients of 8 texts each (one full batch each) against 10 batches/s."""
    duration_s, codes, shed_s = 2.5, [], []
    lock, stop_at = threading.Lock(), time.monotonic() + duration_s

    def client(_):
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                answer = http.post(f"{server.url}/v1/predict", json={"texts": ["a fine film"] * MAX_BATCH},
                                   headers={"Authorization": f"Bearer {KEY}"})
                with lock:
                    codes.append(answer.status_code)
                    if answer.status_code == 503:
                        assert int(answer.headers["retry-after"]) >= 1
                        shed_s.append(time.monotonic() - started)
                if answer.status_code != 200:
                    time.sleep(0.1)  # a polite client backs off (and the test spends less CPU)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(client, range(16)))
    capacity = duration_s / DELAY_S
    counts = {code: codes.count(code) for code in set(codes)}
    assert counts.get(200, 0) >= 0.5 * capacity, counts
    assert counts.get(504, 0) <= 2, counts
    assert set(counts) <= {200, 503, 504}, counts
    assert shed_s and sorted(shed_s)[len(shed_s) // 2] < 0.5, "503s should come at once"


def test_sigterm_under_load_finishes_in_flight_requests_then_exits_0(server):
    bodies = [{"texts": [f"film number {i}"] * MAX_BATCH} for i in range(6)]  # ~0.6 s of work
    done_before = _arrived(server)
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        answers = [pool.submit(post, server, body) for body in bodies]
        # SIGTERM only once every request has reached the server (in flight or answered); a
        # connection that has not sent its request yet is closed by the shutdown, as it should be.
        deadline = time.monotonic() + 10
        while _arrived(server) - done_before < len(bodies):
            assert time.monotonic() < deadline, "requests did not reach the server"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        time.sleep(0.1)
        try:
            late = httpx.post(f"{server.url}/v1/predict", json={"texts": ["x"]},
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=5).status_code
        except httpx.TransportError:
            late = "refused"
        codes = [answer.result(timeout=30).status_code for answer in answers]
    assert codes == [200] * len(bodies)
    assert late in ("refused", 503)
    assert server.process.wait(TIMEOUT_S + 10) == 0
    assert time.monotonic() - stopped < TIMEOUT_S + 10


def _arrived(server: Server) -> float:
    """Prediction requests the server has answered or is handling (not counting this scrape)."""
    samples = {}
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("paretune_requests_in_flight ") or (
                line.startswith("paretune_requests_total{") and 'route="/v1/predict"' in line):
            name = line.split("{")[0].split(" ")[0]
            samples[name] = samples.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return samples.get("paretune_requests_total", 0.0) + samples.get("paretune_requests_in_flight", 1.0) - 1

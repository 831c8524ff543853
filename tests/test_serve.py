"""`paretune serve`: real uvicorn servers on free loopback ports, over tiny trained runs.

Servers run in a thread of this process (uvicorn.Server on a socket bound to port 0), except the
end-to-end test, which starts the installed `paretune serve` command. Where a test needs the
model to be slow or to fail, a thin wrapper around the real Predictor delays or raises.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import ner_sentences, sentiment_rows, write_conll, write_csv
from prometheus_client.parser import text_string_to_metric_families

import paretune
from paretune.errors import ParetuneError
from paretune.predictor import Predictor
from paretune.serving.auth import KeyChecker, hash_key, load_api_keys
from paretune.serving.limits import RateLimiter
from paretune.serving.masking import mask_pii
from paretune.serving.settings import ServeSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEY, OTHER_KEY = "test-key-0123456789abcdef", "other-key-0123456789abcdef"
TEXTS = ["this film was really good", "a dull and boring plot", "the music is lovely",
         "that ending was horrible", "the cast was superb and the story fine", "so sad and bad"]


# --- runs and servers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def cls_run(folder, tiny_model_dir) -> Path:
    """A few steps are enough: tests compare the server with the Predictor, not with the truth."""
    return paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(64, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(16, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 4, "batch_size": 16, "lr": 1e-3, "warmup_ratio": 0.0, "seed": 7,
                     "save_every": 10_000},
        "output": {"dir": str(folder / "cls-run")},
    }).path


@pytest.fixture(scope="module")
def predictor(cls_run) -> Predictor:
    return Predictor.load(cls_run, device="cpu")


def settings(**changes) -> ServeSettings:
    # The model in a thread of the server (model_processes=0): tests wrap the Predictor to make it
    # slow or fail, which only works in this process. tests/test_serve_processes.py covers the pool.
    base = {"api_key_hashes": (hash_key(KEY), hash_key(OTHER_KEY)), "rate_limit": 0, "max_wait_ms": 50,
            "model_processes": 0,
            "max_texts": 4, "max_chars": 100, "max_body_bytes": 4096, "log_inputs": True}
    return ServeSettings(**{**base, **changes})


@contextmanager
def running(predictor, serve_settings: ServeSettings, wait_ready: bool = True):
    """(base URL, uvicorn.Server) of a live server; stopped, gracefully, on exit."""
    import uvicorn

    from paretune.serving.app import create_app
    from paretune.serving.server import uvicorn_options

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with other test runs
    config = uvicorn.Config(create_app(predictor, serve_settings), **uvicorn_options(serve_settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    scheme = "https" if serve_settings.ssl_certfile else "http"
    url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_for(lambda: server.started)
        if wait_ready:
            wait_for(lambda: httpx.get(f"{url}/readyz", verify=False).status_code == 200)
        yield url, server
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def post(url: str, body=None, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/predict", json=body, headers=headers, timeout=30, **kwargs)


def metric(url: str, name: str, **labels) -> float:
    """One sample of /metrics (0 if it does not exist yet)."""
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def server(predictor):
    with running(predictor, settings()) as (url, _):
        yield url


class Wrapped:
    """The real predictor, made slow, failing or gated once `armed` (warm-up runs unchanged)."""

    def __init__(self, inner: Predictor, delay: float = 0.0, error: Exception | None = None,
                 gate: threading.Event | None = None):
        self.inner, self.delay, self.error, self.gate = inner, delay, error, gate
        self.armed, self.entered = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, texts, all_scores=False, batch_size=64):
        if self.gate is not None:
            self.gate.wait(30)
        if self.armed.is_set():
            self.entered.set()
            time.sleep(self.delay)
            if self.error is not None:
                raise self.error
        return self.inner.predict(texts, all_scores=all_scores, batch_size=batch_size)


# --- the API --------------------------------------------------------------------------------


def test_health_ready_and_openapi_docs(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server}/readyz").json()["status"] == "ready"
    schema = httpx.get(f"{server}/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "texts" in body["properties"]
    assert httpx.get(f"{server}/docs").status_code == 200


def test_predict_needs_a_valid_api_key(server, predictor):
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": f"Basic {KEY}"}):
        refused = httpx.post(f"{server}/v1/predict", json={"texts": TEXTS[:1]}, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
    for key in (KEY, OTHER_KEY):
        answer = post(server, {"texts": TEXTS[:2], "all_scores": True}, key=key)
        assert answer.status_code == 200
        expected = predictor.predict(TEXTS[:2], all_scores=True)
        got = answer.json()["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        assert [p["scores"] for p in got] == [pytest.approx(p["scores"], abs=1e-5) for p in expected]
    assert post(server, {"text": TEXTS[0]}).json()["predictions"][0].keys() == {"label", "score"}
    assert httpx.get(f"{server}/v1/model").status_code == 401
    info = httpx.get(f"{server}/v1/model", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["task"] == "classification" and info["labels"] == predictor.task.label_names


def test_body_size_limit_413(server):
    big = {"texts": ["x" * 5000]}
    assert post(server, big).status_code == 413
    # A chunked body declares no length: it is counted as it arrives.
    chunks = iter([b'{"texts": ["' + b"y" * 3000, b"y" * 3000 + b'"]}'])
    answer = httpx.post(f"{server}/v1/predict", content=chunks, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 413
    assert "4096 bytes" in answer.json()["detail"]


def test_request_limits_422_say_what_is_wrong(server):
    too_many = post(server, {"texts": TEXTS[:5]})
    assert too_many.status_code == 422
    assert "5 texts in one request; the limit is 4" in too_many.text
    too_long = post(server, {"texts": ["fine", "z" * 101]})
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == [
        {"loc": ["body", "texts", 1], "msg": "text has 101 characters; the limit is 100"}]
    assert "empty" in post(server, {"texts": ["   "]}).text


def test_malformed_json_422_without_traceback(server):
    for raw in (b'{"texts": ["unclosed', b"not json at all", b'{"texts": "not a list"}',
                b'{"texts": ["a"], "surprise": 1}', b'{"text": "a", "texts": ["b"]}', b""):
        answer = httpx.post(f"{server}/v1/predict", content=raw,
                            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        assert answer.status_code == 422, raw
        assert answer.json()["detail"]
        assert "Traceback" not in answer.text and 'File "' not in answer.text


def test_rate_limit_429_per_key(predictor):
    with running(predictor, settings(rate_limit=0.5, rate_burst=2)) as (url, _):
        codes = [post(url, {"texts": TEXTS[:1]}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = post(url, {"texts": TEXTS[:1]})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert post(url, {"texts": TEXTS[:1]}, key=OTHER_KEY).status_code == 200  # its own bucket
        assert metric(url, "paretune_requests_total", route="/v1/predict", status="429") == 2


def test_concurrent_requests_get_their_own_answers_from_shared_batches(server, predictor):
    requests = [{"texts": [text], "all_scores": i % 3 == 0} for i, text in enumerate(TEXTS * 3)]
    requests += [{"texts": [TEXTS[i], TEXTS[-1 - i]]} for i in range(3)]
    batches_before = metric(server, "paretune_batch_size_count")
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        answers = list(pool.map(lambda body: post(server, body), requests))
    for body, answer in zip(requests, answers):
        assert answer.status_code == 200
        expected = predictor.predict(body["texts"], all_scores=body.get("all_scores", False))
        got = answer.json()["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)
        assert ("scores" in got[0]) == body.get("all_scores", False)
    batches = metric(server, "paretune_batch_size_count") - batches_before
    assert batches < len(requests)  # requests were grouped
    single = metric(server, "paretune_batch_requests_bucket", le="1.0")
    assert metric(server, "paretune_batch_requests_count") > single  # some pass served several requests


def test_a_lone_request_does_not_sit_out_the_batching_wait(predictor):
    with running(predictor, settings(max_wait_ms=5000)) as (url, _):
        started = time.monotonic()
        assert post(url, {"texts": TEXTS[:1]}).status_code == 200
        assert time.monotonic() - started < 2.5  # nothing else was on its way: no 5 s wait


def test_metrics_counters_move(server):
    before = metric(server, "paretune_requests_total", route="/v1/predict", status="200")
    predictions_before = metric(server, "paretune_predictions_total")
    assert post(server, {"texts": TEXTS[:3]}).status_code == 200
    assert metric(server, "paretune_requests_total", route="/v1/predict", status="200") == before + 1
    assert metric(server, "paretune_predictions_total") == predictions_before + 3
    assert metric(server, "paretune_request_duration_seconds_count", route="/v1/predict") >= 1
    assert metric(server, "paretune_model_info", task="classification", method="full") == 1
    assert metric(server, "paretune_ready") == 1
    httpx.get(f"{server}/no/such/path")
    assert metric(server, "paretune_requests_total", route="other", status="404") >= 1


def test_logged_inputs_are_masked(server, caplog):
    with caplog.at_level("INFO", logger="paretune.serve"):
        sent = post(server, {"texts": ["mail john.doe@example.com or call +1 555 123 4567"]})
    assert sent.status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "[EMAIL]" in logged and "[PHONE]" in logged
    assert "john.doe" not in logged and "4567" not in logged


# --- lifecycle ------------------------------------------------------------------------------


def test_readyz_flips_after_warm_up(predictor):
    gate = threading.Event()
    with running(Wrapped(predictor, gate=gate), settings(), wait_ready=False) as (url, _):
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive while warming up
        waiting = httpx.get(f"{url}/readyz")
        assert (waiting.status_code, waiting.json()["status"]) == (503, "warming up")
        assert metric(url, "paretune_ready") == 0
        gate.set()
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200)


def test_graceful_shutdown_lets_the_in_flight_request_finish(predictor):
    slow = Wrapped(predictor, delay=1.0)
    with running(slow, settings()) as (url, server):
        slow.armed.set()
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(post, url, {"texts": TEXTS[:2]})
            assert slow.entered.wait(10)
            server.should_exit = True  # what SIGTERM does
            answer = in_flight.result(timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def test_timeout_504_and_model_errors_500_without_details(predictor):
    slow = Wrapped(predictor, delay=1.0)
    with running(slow, settings(request_timeout_s=0.2)) as (url, _):
        slow.armed.set()
        answer = post(url, {"texts": TEXTS[:1]})
        assert answer.status_code == 504 and "0.2 s" in answer.json()["detail"]
    failing = Wrapped(predictor, error=RuntimeError("secret internals at /home/model.py"))
    with running(failing, settings()) as (url, _):
        failing.armed.set()
        answer = post(url, {"texts": TEXTS[:1]})
        assert answer.status_code == 500
        assert "secret" not in answer.text and "Traceback" not in answer.text


def test_warm_up_failure_keeps_readyz_at_503(predictor):
    broken = Wrapped(predictor, error=RuntimeError("weights are NaN"))
    broken.armed.set()
    with running(broken, settings(), wait_ready=False) as (url, _):
        wait_for(lambda: httpx.get(f"{url}/readyz").json()["status"] == "failed")
        assert "weights are NaN" in httpx.get(f"{url}/readyz").json()["detail"]


def test_tls(predictor, tmp_path):
    openssl = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                              "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                              "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                             capture_output=True)
    if openssl.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    tls = settings(ssl_certfile=tmp_path / "cert.pem", ssl_keyfile=tmp_path / "key.pem")
    with running(predictor, tls) as (url, _):
        assert url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        assert post(url, {"texts": TEXTS[:1]}, verify=trusted).status_code == 200


# --- NER ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ner_predictor(folder, tiny_model_dir) -> Predictor:
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "task": {"type": "ner"},
        "data": {"train": str(write_conll(folder / "train.conll", ner_sentences(200, seed=1))),
                 "validation": str(write_conll(folder / "validation.conll", ner_sentences(40, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 40, "batch_size": 16, "lr": 3e-3, "scheduler": "constant",
                     "warmup_ratio": 0.0, "seed": 7, "eval_every": 40, "save_every": 10_000},
        "output": {"dir": str(folder / "ner-run")},
    })
    return Predictor.load(run.path, device="cpu")


def test_ner_answers_carry_character_offsets(ner_predictor):
    texts = ["john met mary in paris.", "  alice ,  then   berlin  and google!"]
    with running(ner_predictor, settings()) as (url, _):
        answer = post(url, {"texts": texts})
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    assert sum(len(p["entities"]) for p in predictions) >= 2
    for text, prediction in zip(texts, predictions):
        for entity in prediction["entities"]:
            assert text[entity["start"]:entity["end"]] == entity["text"]
            assert entity["type"] in {"PER", "LOC", "ORG"}


# --- settings, keys, limits, masking (no server) --------------------------------------------


def test_public_host_needs_api_keys_and_tls_needs_both_files(tmp_path):
    with pytest.raises(ParetuneError, match="without API keys"):
        ServeSettings(host="0.0.0.0")
    assert ServeSettings(host="0.0.0.0", api_key_hashes=(hash_key(KEY),)).host == "0.0.0.0"
    assert ServeSettings(host="0.0.0.0", allow_no_auth=True).allow_no_auth
    assert ServeSettings(host="::1").loopback and ServeSettings(host="localhost").loopback
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(ParetuneError, match="both --ssl-certfile and --ssl-keyfile"):
        ServeSettings(ssl_certfile=tmp_path / "cert.pem")


def test_api_keys_from_file_and_environment_are_kept_hashed(tmp_path):
    stored = "stored-as-digest-0123456789"
    key_file = tmp_path / "keys"
    key_file.write_text(f"# team keys\n{KEY}\n\nsha256:{hash_key(stored)}\n")
    digests = load_api_keys(key_file, environ={"PARETUNE_API_KEYS": f" {OTHER_KEY} ,"})
    assert KEY not in "".join(digests) and len(digests) == 3
    checker = KeyChecker(digests)
    ids = [checker.identify(f"Bearer {key}") for key in (KEY, stored, OTHER_KEY)]
    assert None not in ids and len(set(ids)) == 3
    assert checker.identify(f"bearer  {KEY} ") == ids[0]
    assert checker.identify("Bearer nope") is None and checker.identify(None) is None
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ParetuneError, match="holds no keys"):
        load_api_keys(tmp_path / "empty", environ={})


def test_token_bucket_refills_at_the_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.retry_after("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.retry_after("a") == pytest.approx(0.5)
    now[0] = 0.5  # one request's worth refilled
    assert limiter.retry_after("a") == 0 and limiter.retry_after("a") > 0
    assert limiter.retry_after("b") == 0


def test_masking_hides_contact_details_and_ids():
    text = ("jane@corp.example.org, +44 20 7946 0958, 555-123-4567, SSN 123-45-6789, card 4111 1111 1111 "
            "1111, IBAN DE89 3704 0044 0532 0130 00, passport X12345678; 2026-11-23, 10 out of 10")
    masked = mask_pii(text)
    for secret in ("jane", "7946", "4567", "6789", "4111", "DE89", "X1234"):
        assert secret not in masked
    assert "2026-11-23" in masked and "10 out of 10" in masked


# --- the command ----------------------------------------------------------------------------


def test_a_run_that_cannot_load_stops_the_server_at_start(cls_run, tmp_path):
    from paretune.serving.server import load_predictor

    with pytest.raises(ParetuneError, match="not a paretune run folder"):
        load_predictor(tmp_path)
    broken = tmp_path / "broken-run"
    shutil.copytree(cls_run, broken)
    (broken / "model" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ParetuneError, match=f"cannot serve {broken}: loading its model failed"):
        load_predictor(broken)


@pytest.mark.slow  # a fresh process imports torch and transformers: 10-25 s on 2 shared cores
def test_serve_command_starts_answers_and_stops_on_sigterm(cls_run):
    import sysconfig

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    command = Path(sysconfig.get_path("scripts")) / "paretune"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PARETUNE_API_KEYS": KEY}
    server = subprocess.Popen([str(command), "serve", str(cls_run), "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert server.poll() is None, server.stdout.read()
            try:
                return httpx.get(f"{url}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=240)  # model processes import torch again: minutes on a busy machine
        assert post(url, {"texts": TEXTS[:2]}).status_code == 200
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so supervisors see it.
        assert server.wait(30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
    assert "Finished server process" in server.stdout.read()

"""Issue 28 item 4, "a generation server is tied up by one request": a request that runs past the
server's timeout gets 504 and its work stops between two decoding steps, so the next request is
served at once; and the admission estimate counts a step that overruns as still running."""
from __future__ import annotations

import functools
import time

import httpx
import pytest
from test_serve_openai import KEY, live_server, trained_once

STEP_DELAY_S = 0.02  # per row of a forward pass: a tiny model made slow enough to outlast the timeout
TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    import torch

    from paretune.serving.loading import load_predictor
    from paretune.tasks.chat_format import end_of_turn_ids

    run = trained_once(tmp_path_factory, "chat")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    predictor = load_predictor(run)
    forward = predictor.model.forward

    never_ends = sorted(end_of_turn_ids(predictor.tokenizer))

    @functools.wraps(forward)
    def slow_forward(*args, **kwargs):  # slower for more rows, as a real model is, and never stops
        time.sleep(STEP_DELAY_S * kwargs["input_ids"].shape[0])
        out = forward(*args, **kwargs)
        out.logits[..., never_ends] = -1e9
        return out

    predictor.model.forward = slow_forward
    with live_server([run], predictor=predictor, request_timeout_s=TIMEOUT_S, max_new_tokens=256) as running:
        running.run = run
        yield running
    torch.set_num_threads(threads)


def _running(server) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    return float(next(line.split()[-1] for line in metrics.splitlines()
                      if line.startswith("paretune_sequences_running ")))


@pytest.mark.parametrize("route", ["chat", "predict"])
def test_a_timed_out_generation_stops_and_the_next_request_is_served(slow_server, route):
    auth = {"Authorization": f"Bearer {KEY}"}
    prompt = "good film " * 40
    if route == "chat":  # 200 tokens at 20 ms a step: far past the timeout
        url, body = "/v1/chat/completions", {"model": slow_server.run.name, "max_tokens": 200,
                                            "messages": [{"role": "user", "content": prompt}]}
    else:  # many long prompts at once, as in the probe
        url, body = "/v1/predict", {"texts": [prompt] * 32}
    started = time.monotonic()
    answer = httpx.post(f"{slow_server.url}{url}", json=body, headers=auth, timeout=30)
    assert answer.status_code == 504, answer.text
    assert time.monotonic() - started < TIMEOUT_S + 2
    # Within a step or two of the deadline its rows are gone and a new request is answered (while
    # the doomed step finishes, the server may say 503 with Retry-After: it refuses, it never hangs).
    deadline = time.monotonic() + 3
    quick = {"model": slow_server.run.name, "max_tokens": 2, "messages": [{"role": "user", "content": "good"}]}
    while True:
        followed = httpx.post(f"{slow_server.url}/v1/chat/completions", json=quick, headers=auth, timeout=30)
        if followed.status_code == 200:
            break
        assert followed.status_code == 503 and "Retry-After" in followed.headers, followed.text
        assert time.monotonic() < deadline, "the timed-out request still holds the engine"
        time.sleep(0.1)
    assert _running(slow_server) == 0


def test_the_admission_estimate_counts_an_overrunning_step_as_still_running():
    from paretune.inference.engine import expected_wait_s

    def wait(elapsed: float) -> float:
        return expected_wait_s(step_s=0.1, step_started=100.0 - elapsed, now=100.0, waiting=0, free_rows=4,
                               max_running=4, tokens_per_sequence=10)

    assert wait(0.05) == pytest.approx(0.05)  # on time: the rest of the step
    assert wait(3.0) >= 3.0  # 30 times its usual length and not done: not "finished"
    full = expected_wait_s(0.1, None, 100.0, waiting=8, free_rows=0, max_running=4, tokens_per_sequence=10)
    assert full == pytest.approx(3 * 10 * 0.1)  # between steps, three batches' worth of sequences ahead

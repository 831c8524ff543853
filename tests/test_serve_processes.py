"""`paretune serve` with the model in processes of its own (serving/model_pool.py, model_process.py).

One live server with one model process serves the whole module: starting a process imports torch
and transformers again, which costs seconds. How the model process sorts failures (a bad input,
a broken model) is checked in this process, on a stand-in predictor.
"""
from __future__ import annotations

import asyncio
import time

import httpx
import psutil
import pytest
from test_serve import (TEXTS, cls_run, folder, metric, post, predictor, running,  # noqa: F401
                        settings, wait_for)

from paretune.errors import ParetuneError
from paretune.serving import model_process
from paretune.serving.batcher import Overloaded
from paretune.serving.model_pool import ModelFailed, ModelPool, PoolOptions, _Job, _Worker
from paretune.serving.metrics import ServerMetrics
from paretune.stored.ort_model import OrtModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def model_children() -> list[psutil.Process]:
    """The model processes: children of the fork server, which is a child of this process."""
    return [p for p in psutil.Process().children(recursive=True) if p.parent().pid != psutil.Process().pid]


@pytest.fixture(scope="module")
def pooled(predictor):
    """(url, model process) of a server with one model process, rate limit 1/s per key."""
    with running(predictor, settings(model_processes=1, rate_limit=1, rate_burst=3),
                 wait_ready=False) as (url, server):
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=120)  # imports torch
        (child,) = model_children()
        yield url, child
    child.wait(15)  # graceful shutdown stopped it: no orphan left behind


def test_model_process_answers_as_the_predictor_does(pooled, predictor):
    url, _ = pooled
    answer = post(url, {"texts": TEXTS[:3], "all_scores": True})
    assert answer.status_code == 200, answer.text
    expected = predictor.predict(TEXTS[:3], all_scores=True)
    for got, want in zip(answer.json()["predictions"], expected):
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)
    assert metric(url, "paretune_predictions_total") >= 3


def test_model_processes_run_at_a_lower_cpu_priority_than_the_http_process(pooled):
    _, child = pooled
    assert child.nice() == psutil.Process().nice() + 5  # --model-nice's default


def test_auth_and_rate_limit_hold_in_front_of_the_model_processes(pooled):
    url, _ = pooled
    assert post(url, {"texts": TEXTS[:1]}, key=None).status_code == 401
    answers = [post(url, {"texts": TEXTS[:1]}).status_code for _ in range(6)]
    assert 429 in answers  # one HTTP process keeps every key's bucket, whatever the model processes


def test_a_model_process_that_dies_is_replaced(pooled):
    url, child = pooled
    child.kill()
    child.wait(10)
    deadline = time.monotonic() + 90
    while True:  # the queued request is answered by the new process once it has warmed up
        time.sleep(1.0)  # also lets the rate limit's bucket refill
        answer = post(url, {"texts": TEXTS[:1]})
        if answer.status_code == 200:
            break
        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
    (replacement,) = model_children()
    assert replacement.pid != child.pid


# --- the model process's answers, in this process --------------------------------------------


class StandIn:
    """Predicts text lengths; raises for "bad" (a user error) and "boom" (a bug)."""

    device = "cpu"

    def predict(self, texts, all_scores=False, batch_size=64):
        if "bad" in texts:
            raise ParetuneError("input 1 is bad")
        if "boom" in texts:
            raise RuntimeError("model exploded")
        return [{"length": len(t), "scores": all_scores} for t in texts]


def test_one_bad_input_fails_only_its_own_request():
    answers = model_process.answer(StandIn(), [(["ab"], False), (["bad"], False), (["boom", "c"], False),
                                              (["xyz"], True)])
    assert answers[0] == ("ok", [{"length": 2, "scores": False}])
    assert answers[1] == ("user", "input 1 is bad")
    assert answers[2][0] == "error" and "model exploded" in answers[2][1]
    assert answers[3] == ("ok", [{"length": 3, "scores": True}])


def test_failures_reach_the_callers_as_422_500_and_503_material():
    async def scenario():
        loop = asyncio.get_running_loop()
        pool = ModelPool(PoolOptions(run_dir=".", processes=1), ServerMetrics({"run": "r"}))
        pool._loop = loop
        jobs = [_Job([t], False, 0.0, 1e9, loop.create_future()) for t in ("a", "b", "c")]
        worker = _Worker(process=None, ready=True, jobs=jobs)
        pool._answered(worker, 0, [("ok", [1]), ("user", "input 1 is bad"), ("error", "Traceback...")], 0.01)
        assert jobs[0].future.result() == [1]
        with pytest.raises(ParetuneError, match="input 1 is bad"):  # the app answers 422
            jobs[1].future.result()
        with pytest.raises(ModelFailed):  # the app answers 500, details only in the log
            jobs[2].future.result()
        assert worker.jobs is None  # free for the next batch
        lost = [_Job(["d"], False, 0.0, 1e9, loop.create_future())]
        pool._fail(lost, Overloaded("the model process stopped; retry"))
        with pytest.raises(Overloaded):  # the app answers 503 with Retry-After
            lost[0].future.result()

    asyncio.run(scenario())


def test_plain_runs_are_served_through_onnx_runtime_when_the_export_matches(predictor, tmp_path):
    from paretune.serving.onnx_engine import onnx_for_serving, use_onnx

    assert onnx_for_serving(predictor, "torch", tmp_path) is None
    path = onnx_for_serving(predictor, "auto", tmp_path)
    assert path is not None and path.parent == tmp_path
    expected = predictor.predict(TEXTS, all_scores=True)
    onnx = type(predictor)(predictor.model, predictor.tokenizer, predictor.task, predictor.max_length,
                           predictor.device, predictor.run_dir)
    use_onnx(onnx, path)
    assert isinstance(onnx.model, OrtModel)
    for got, want in zip(onnx.predict(TEXTS, all_scores=True), expected):
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)

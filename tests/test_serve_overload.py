"""Overload handling without a server: the micro-batcher's admission and shedding, under a fake clock,
the failed-login limiter, and the names and log lines that unauthenticated eyes may see."""
from __future__ import annotations

import asyncio

import pytest

from paretune.serving.access_log import loggable_path
from paretune.models import portable_model_name
from paretune.serving.batcher import MicroBatcher, Overloaded
from paretune.serving.limits import FailedAuthLimiter
from paretune.serving.metrics import ServerMetrics

PASS_S = 0.125  # what one forward pass costs on the fake clock


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakePredictor:
    """Every call to predict moves the clock on by PASS_S and records the texts it got."""

    def __init__(self, clock: Clock):
        self.clock, self.calls = clock, []

    def predict(self, texts, all_scores=False, batch_size=64):
        self.clock.now += PASS_S
        self.calls.append(list(texts))
        return [{"label": "positive", "score": 1.0} for _ in texts]


def warmed_batcher(**options) -> tuple[MicroBatcher, Clock, FakePredictor]:
    """A batcher whose warm-up measured PASS_S per pass, accepting jobs, with no worker thread:
    tests run the worker loop (`_serve`) themselves, after `stop()` queues its end."""
    clock = Clock()
    predictor = FakePredictor(clock)
    settings = {"max_batch_size": 8, "max_wait_s": 0.0, "max_queue": 256, "timeout_s": 1.0, **options}
    batcher = MicroBatcher(predictor, ServerMetrics({"run": "r"}), clock=clock, **settings)
    batcher._warm_up()
    batcher._accepting = True
    predictor.calls.clear()
    return batcher, clock, predictor


def test_warm_up_measures_the_time_of_a_full_pass():
    batcher, _, _ = warmed_batcher()
    assert batcher.batch_s == pytest.approx(PASS_S)


def test_jobs_that_could_not_finish_in_time_are_refused_at_once():
    # 256 texts of queue room, but 1 s of timeout drains only 8 passes of 8: the 9th job would
    # wait past its deadline, so it is refused now (503) rather than answered 504 in a second.
    batcher, _, _ = warmed_batcher()
    admitted = [batcher.submit(["t"] * 8, False) for _ in range(8)]
    with pytest.raises(Overloaded, match=r"would take 1\.1 s, more than the 1 s timeout") as refused:
        batcher.submit(["t"] * 8, False)
    assert refused.value.retry_after_s > 0
    assert len(admitted) == 8 and batcher._queued_texts == 64


def test_a_pass_running_past_its_estimate_is_not_counted_as_done():
    batcher, clock, _ = warmed_batcher()
    batcher._running_since = clock.now - 0.5  # a 0.125 s pass, 0.5 s in: it may need 0.5 s more
    batcher.submit(["t"] * 8, False)  # 0.5 s + one pass: within the 1 s timeout
    batcher._running_since = clock.now - 0.9
    with pytest.raises(Overloaded, match="would take"):
        batcher.submit(["t"] * 8, False)


def test_the_queue_bound_still_holds_when_the_model_is_fast():
    batcher, _, _ = warmed_batcher(max_queue=16, timeout_s=60.0)
    batcher.submit(["t"] * 16, False)
    with pytest.raises(Overloaded, match="16 texts are already waiting"):
        batcher.submit(["t"], False)


def test_a_caller_that_gives_up_frees_its_queue_room_at_once():
    batcher, _, predictor = warmed_batcher(max_queue=16, timeout_s=60.0)
    first = batcher.submit(["t"] * 16, False)
    with pytest.raises(Overloaded):
        batcher.submit(["t"] * 8, False)
    assert first.cancel()  # what the handler's timeout does
    second = batcher.submit(["u"] * 8, False)
    batcher.stop()
    batcher._serve()
    assert predictor.calls == [["u"] * 8]  # the cancelled job never reached the model
    assert len(second.result(0)) == 8 and batcher._queued_texts == 0


def test_queued_jobs_past_or_near_their_deadline_are_dropped_before_the_model_runs():
    batcher, clock, predictor = warmed_batcher()
    stale = [batcher.submit([f"old {i}"] * 8, False) for i in range(2)]
    clock.now += 0.95  # one more pass (0.1 s) would end after their 1 s deadline
    fresh = batcher.submit(["new"] * 8, False)
    batcher.stop()
    batcher._serve()
    assert predictor.calls == [["new"] * 8]
    for future in stale:
        with pytest.raises(Overloaded, match="within the timeout"):
            future.result(0)
    assert len(fresh.result(0)) == 8 and batcher._queued_texts == 0


def test_the_pass_time_estimate_follows_the_model():
    batcher, clock, predictor = warmed_batcher(timeout_s=60.0)
    predictor_predict = predictor.predict

    def slower(texts, **kwargs):
        clock.now += 0.4  # the model became 5x slower (longer texts, a busier machine)
        return predictor_predict(texts, **kwargs)

    predictor.predict = slower
    for _ in range(5):
        batcher.submit(["t"] * 8, False)
    batcher.stop()
    batcher._serve()
    assert 0.3 < batcher.batch_s <= 0.5


def test_failed_logins_are_limited_per_address_within_a_window():
    now = [0.0]
    limiter = FailedAuthLimiter(max_failures=3, window_s=60, clock=lambda: now[0])
    for second in (0, 10, 20):
        now[0] = second
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(40)  # until the failure at 0 ages out
    assert limiter.retry_after("10.0.0.2") == 0
    now[0] = 60.0
    assert limiter.retry_after("10.0.0.1") == 0  # one more guess, then blocked again
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(10)
    assert FailedAuthLimiter(max_failures=0).retry_after("x") == 0


def test_failed_login_memory_is_bounded():
    limiter = FailedAuthLimiter(max_failures=2, window_s=60, clock=lambda: 0.0)
    limiter.max_clients = 100
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._failures) <= 100


@pytest.mark.parametrize("given, shown", [
    ("bert-base-uncased", "bert-base-uncased"), ("org/model-name", "org/model-name"),
    ("/home/alice/models/my-bert/", "my-bert"), ("./models/tiny", "tiny"), ("~/models/tiny", "tiny"),
    ("/srv/a/b/c", "c"),
])
def test_base_model_is_named_never_shown_as_a_path(given, shown):
    # /metrics is open: the name it shows must not tell the machine's user names or folder layout.
    name = portable_model_name(given)
    assert name.startswith(shown) and "/home" not in name and "alice" not in name and "/srv" not in name


def test_logged_paths_cannot_forge_log_lines():
    assert loggable_path("/v1/predict") == "/v1/predict"
    forged = loggable_path('/x\n10:00:00 INFO 127.0.0.1 "GET /admin" 200')
    assert "\n" not in forged and '"' not in forged.replace('\\"', "")
    assert len(loggable_path("/" + "a" * 5000)) <= 203


def test_a_queued_job_no_longer_counts_as_on_its_way():
    # The worker waits for more jobs only while requests are on their way. A request whose job is
    # queued is not: if it still counted until its handler left `incoming()`, the worker could take
    # the job in between and wait out max_wait_s for nobody (a lone client paid it on most requests).
    batcher, _, _ = warmed_batcher(max_wait_s=5.0)
    with batcher.incoming():
        assert batcher._incoming == 1
        batcher.submit(["t"], False)
        assert batcher._incoming == 0
    assert batcher._incoming == 0
    with pytest.raises(Overloaded), batcher.incoming():  # refused: it counted until it was turned away
        batcher._accepting = False
        batcher.submit(["t"], False)
    assert batcher._incoming == 0


# --- the model processes' pool (serving/model_pool.py), without processes -------------------------


class FakeProcess:
    killed = False

    def kill(self):
        self.killed = True


class FakeLink:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


def pool_with_one_busy_process(texts_running: int, text_s: float = 0.01, timeout_s: float = 2.0):
    """(pool, clock, worker): a pool whose one process is running a batch sent at clock 100."""
    from paretune.serving.model_pool import ModelPool, PoolOptions, _Job, _Worker

    clock = Clock()
    pool = ModelPool(PoolOptions(run_dir=".", processes=1, timeout_s=timeout_s), ServerMetrics({"run": "r"}),
                     clock=clock)
    pool._loop, pool._accepting, pool.text_s = asyncio.get_running_loop(), True, text_s
    worker = _Worker(FakeProcess(), FakeLink(), ready=True)
    pool._workers.append(worker)
    pool._send(worker, [_Job(["t"] * texts_running, False, clock.now, clock.now + timeout_s,
                             pool._loop.create_future())])
    return pool, clock, worker


def test_a_pass_that_overran_its_estimate_is_not_counted_as_nearly_done():
    async def scenario():
        pool, clock, _ = pool_with_one_busy_process(texts_running=10)  # expected to take 0.1 s
        clock.now += 0.05
        pool.submit(["t"], False)  # in time: 0.05 s left, then 0.01 s
        clock.now += 1.55  # 1.6 s into a 0.1 s pass: it may need as long again
        with pytest.raises(Overloaded, match="too close to the 2 s timeout"):
            pool.submit(["t"], False)

    asyncio.run(scenario())


def test_a_job_joins_a_batch_only_if_the_batch_ends_before_the_first_deadline():
    from paretune.serving.model_pool import _Job

    async def scenario():
        pool, clock, _ = pool_with_one_busy_process(texts_running=1, text_s=0.1)
        first = _Job(["a"] * 10, False, clock.now, clock.now + 2.0, pool._loop.create_future())
        second = _Job(["b"] * 10, False, clock.now + 1.0, clock.now + 3.0, pool._loop.create_future())
        pool._pending.extend([first, second])
        clock.now += 0.5  # 20 texts would end at 102.5, after the first's deadline (102)
        assert pool._take(32) == [first]
        assert list(pool._pending) == [second]  # the next batch; not dropped
        assert pool._take(32) == [second]

    asyncio.run(scenario())


def test_a_batch_running_past_every_deadline_is_killed():
    from paretune.serving.model_pool import _Worker

    async def scenario():
        pool, clock, worker = pool_with_one_busy_process(texts_running=4, text_s=0.01)
        (job,) = worker.jobs
        pool._update_ready()
        assert pool.ready.is_set()
        clock.now += 2.5  # within the grace after the 2 s deadline: still waited for
        pool._kill_stuck()
        assert not worker.process.killed
        clock.now += 1.0
        pool._kill_stuck()
        assert worker.process.killed and not pool.ready.is_set()  # no process can answer
        with pytest.raises(Overloaded, match="stuck"):  # 503 with Retry-After, not a hang
            job.future.result()
        with pytest.raises(Overloaded, match="no model process can answer"):
            pool.submit(["t"], False)
        pool._workers = [_Worker(FakeProcess(), FakeLink(), ready=True)]  # its replacement, warmed up
        pool.submit(["t"], False)  # admitted: the killed batch left no estimate that refuses all

    asyncio.run(scenario())


def test_an_idle_pool_admits_a_request_whatever_its_estimate_says():
    """One very slow batch (a loaded machine) had priced every later request out: refused at the
    door, no batch ran, and the estimate never came down. An idle pool lets the next one in."""
    from paretune.serving.model_pool import ModelPool, PoolOptions, _Worker

    async def scenario():
        clock = Clock()
        pool = ModelPool(PoolOptions(run_dir=".", processes=1, timeout_s=2.0), ServerMetrics({"run": "r"}),
                         clock=clock)
        pool._loop, pool._accepting, pool.text_s = asyncio.get_running_loop(), True, 5.0  # 5 s a text
        worker = _Worker(FakeProcess(), FakeLink(), ready=True)
        pool._workers.append(worker)
        pool.submit(["t"], False)  # admitted and sent: it measures the model again
        assert worker.jobs is not None and len(worker.link.sent) == 1
        with pytest.raises(Overloaded, match="too close"):  # while it runs, the estimate holds
            pool.submit(["t"], False)

    asyncio.run(scenario())


def test_an_idle_batcher_admits_a_request_whatever_its_estimate_says():
    """The in-process batcher's twin of the pool's probe: a pass estimate longer than the timeout
    (one very slow pass) refuses nothing while the batcher is idle, and the admitted job runs."""
    batcher, clock, predictor = warmed_batcher()
    batcher.batch_s = 5.0  # longer than the 1 s timeout
    first = batcher.submit(["t"], False)  # idle: admitted
    with pytest.raises(Overloaded):  # queued behind it, the estimate holds
        batcher.submit(["t"], False)
    batcher.stop(timeout=0)
    batcher._serve()
    assert first.result(timeout=0) is not None and predictor.calls  # it ran: the estimate is measured again
    assert batcher.batch_s < 5.0

"""Dynamic micro-batching: texts from concurrent requests share one forward pass.

Request handlers (on the event loop) put jobs on a queue and await a future; one worker thread
owns the model. It takes the oldest job, then keeps taking jobs until the batch holds
`max_batch_size` texts or the oldest job has waited `max_wait_s`, runs one prediction and hands
each job its own slice of the results. One thread, because one forward pass already uses every
core torch is given; a second would only contend with it.

The wait is only spent when it can pay: handlers announce themselves (`incoming()`) from the
moment a request is let in until its texts are queued, and the worker waits for more jobs only
while some are on their way. A lone request (light traffic) goes to the model at once instead
of sitting out `max_wait_s` for company that is not coming.

Under overload, work is shed before it is done, never after. Every job carries its caller's
deadline. A job is refused at the door (Overloaded, 503) when the texts queued ahead of it would,
at the measured time per forward pass, keep it waiting past its deadline; and the worker drops a
queued job whose deadline has passed or cannot be met by one more pass, instead of running it for
a caller who will have been answered 504. A job whose caller gave up stops counting against the
queue at once. Without this, a queue longer than the timeout can drain makes every request wait
out the timeout, the model does work nobody receives, and throughput collapses to almost nothing.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from paretune.serving.metrics import ServerMetrics

log = logging.getLogger("paretune.serve")

WARM_UP_TEXT = "A short sentence to warm the model up before the first request."


class Overloaded(Exception):
    """No room for this job in time, or the batcher is stopping: retry after `retry_after_s` (503)."""

    def __init__(self, reason: str, retry_after_s: float = 1.0):
        super().__init__(reason)
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    texts: list[str]
    all_scores: bool
    enqueued: float
    deadline: float  # by the batcher's clock; past it the caller has been answered 504
    future: Future = field(default_factory=Future)
    counted: bool = False  # its texts count against max_queue (guarded by the batcher's lock)
    probe: bool = False  # let in by an idle batcher whatever the estimate: it measures the model again


@dataclass
class _Arrival:
    """One request between `incoming()` and its job reaching the queue."""

    queued: bool = False


# The request handled by the current asyncio task (each request runs in its own task).
_ARRIVAL: ContextVar[_Arrival | None] = ContextVar("paretune_arrival", default=None)
_STOP = object()
_EWMA = 0.3  # weight of the newest forward pass in the running estimate of its duration


class MicroBatcher:
    def __init__(self, predictor, metrics: ServerMetrics, *, max_batch_size: int, max_wait_s: float,
                 max_queue: int, timeout_s: float = 30.0, clock=time.monotonic):
        self.predictor, self.metrics = predictor, metrics
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self.timeout_s, self.clock = timeout_s, clock
        self._queue: queue.Queue = queue.Queue()
        self._queued_texts = 0
        self._lock = threading.Lock()  # guards _queued_texts, Job.counted and _accepting
        self._accepting = False
        self._carry: Job | None = None  # a job that did not fit the last batch: first in the next
        self._incoming = 0  # requests let in whose texts are not queued yet (event loop writes it)
        self._thread: threading.Thread | None = None
        self.batch_s = 0.0  # measured seconds per forward pass (0 until the warm-up has run)
        self._running_since: float | None = None  # clock time the current forward pass began
        self.ready = threading.Event()
        self.warm_up_error: str | None = None

    # --- called from the event loop -------------------------------------------------------
    def start(self) -> None:
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="paretune-batcher", daemon=True)
        self._thread.start()

    @contextmanager
    def incoming(self):
        """Wrap a request's parsing and `submit`: tells the worker a job is on its way."""
        arrival = _Arrival()
        token = _ARRIVAL.set(arrival)
        self._incoming += 1
        try:
            yield
        finally:
            _ARRIVAL.reset(token)
            if not arrival.queued:
                self._incoming -= 1

    def _arrived(self) -> None:
        """The calling request's job is about to be queued: it is no longer on its way.

        Before its job reaches the queue, not after the handler returns: otherwise the worker can
        take the job while the handler still counts as incoming, and wait out `max_wait_s` for a
        companion that is not coming (a lone client paid that wait on most requests).
        """
        arrival = _ARRIVAL.get()
        if arrival is not None and not arrival.queued:
            arrival.queued = True
            self._incoming -= 1

    def submit(self, texts: list[str], all_scores: bool) -> Future:
        now = self.clock()
        job = Job(texts, all_scores, enqueued=now, deadline=now + self.timeout_s)
        with self._lock:
            if not self._accepting:
                raise Overloaded("the server is shutting down")
            queued = self._queued_texts + len(texts)
            wait_s = self.expected_wait_s(queued, now)
            if queued > self.max_queue:
                raise Overloaded(f"{self._queued_texts} texts are already waiting for the model", wait_s)
            # Idle (no pass running, nothing queued): let it in whatever the estimate says. One very
            # slow pass (a loaded machine) had priced every later request out, and with no pass run
            # the estimate never came down.
            late = now + wait_s > job.deadline
            job.probe = late and self._running_since is None and self._queued_texts == 0
            if late and not job.probe:
                raise Overloaded(f"the {self._queued_texts} texts waiting would take {wait_s:.1f} s, more "
                                 f"than the {self.timeout_s:g} s timeout", wait_s - self.timeout_s)
            self._queued_texts, job.counted = queued, True
        # A caller that times out cancels its future: its texts stop holding queue room at once.
        job.future.add_done_callback(lambda _: self._uncount(job))
        self._arrived()
        self._queue.put(job)
        return job.future

    def expected_wait_s(self, queued_texts: int, now: float) -> float:
        """When `queued_texts` (including a new job's) would be done: the pass now running, then
        one full pass per `max_batch_size` texts, at the measured time per pass. A pass that has
        run past its estimate is not about to finish: it is taken to need as long again."""
        running = 0.0
        if self._running_since is not None:
            elapsed = now - self._running_since
            running = self.batch_s - elapsed if elapsed < self.batch_s else elapsed
        return running + -(-queued_texts // self.max_batch_size) * self.batch_s

    async def close(self, timeout: float | None = None) -> None:
        """`stop` from the event loop (the server's shutdown), without blocking it."""
        await asyncio.to_thread(self.stop, timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new jobs, finish the queued ones, then end the worker thread."""
        with self._lock:
            self._accepting = False
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
        self.ready.clear()
        self.metrics.ready.set(0)

    def _uncount(self, job: Job) -> None:
        with self._lock:
            if job.counted:
                job.counted = False
                self._queued_texts -= len(job.texts)

    # --- the worker thread ----------------------------------------------------------------
    def _run(self) -> None:
        self._warm_up()
        self._serve()

    def _serve(self) -> None:
        """Run batches until the stop sentinel comes off the queue."""
        while True:
            first = self._carry or self._queue.get()
            self._carry = None
            if first is _STOP:
                return
            if not self._take(first):
                continue
            jobs, stopping = self._gather(first)
            self._predict(jobs)
            if stopping:
                return

    def _warm_up(self) -> None:
        # The first forward passes are slow (allocation, kernel selection): pay for them before
        # /readyz says yes, with a single text and with a full batch. The full batch's time is the
        # first estimate of a pass under load.
        try:
            task = getattr(self.predictor, "task", None)  # a text, or an image for image tasks
            sample = task.sample_input() if task is not None else WARM_UP_TEXT
            with torch.inference_mode():
                self.predictor.predict([sample])
                started = self.clock()
                self.predictor.predict([sample] * self.max_batch_size,
                                       batch_size=self.max_batch_size)
                self.batch_s = self.clock() - started
        except Exception as err:  # the server stays up to say why on /readyz and in the log
            log.exception("warm-up prediction failed; the server will not report ready")
            self.warm_up_error = f"{type(err).__name__}: {err}"
            return
        self.ready.set()
        self.metrics.ready.set(1)
        log.info("model warmed up (%.1f ms per full batch); ready for requests", self.batch_s * 1000)

    def _take(self, job: Job) -> bool:
        """Claim a queued job for the next pass; False if its caller gave up or would get it late."""
        self._uncount(job)
        if job.future.cancelled():
            return False
        now = self.clock()
        if now + self.batch_s > job.deadline and not (job.probe and now < job.deadline):  # a 504 first
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Overloaded("it could not be served within the timeout"))
            return False
        return job.future.set_running_or_notify_cancel()

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """Jobs for one batch, and whether the stop sentinel was met while gathering."""
        jobs, size = [first], len(first.texts)
        deadline = first.enqueued + self.max_wait_s  # time already spent queued counts
        while size < self.max_batch_size:
            remaining = deadline - self.clock()
            try:
                if remaining > 0 and self._incoming > 0:
                    job = self._queue.get(timeout=remaining)
                else:  # nothing is on its way (or time is up): take only what is queued already
                    job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            if size + len(job.texts) > self.max_batch_size:
                self._carry = job
                break
            if self._take(job):
                jobs.append(job)
                size += len(job.texts)
        return jobs, False

    def _predict(self, jobs: list[Job]) -> None:
        now = self._running_since = self.clock()
        for job in jobs:
            self.metrics.queue_wait.observe(now - job.enqueued)
        # all_scores changes what each prediction holds, so each setting gets its own pass.
        for all_scores in (False, True):
            group = [job for job in jobs if job.all_scores == all_scores]
            if group:
                self._predict_group(group, all_scores)
        took = self.clock() - now
        self.batch_s = took if not self.batch_s else (1 - _EWMA) * self.batch_s + _EWMA * took
        self._running_since = None

    def _predict_group(self, jobs: list[Job], all_scores: bool) -> None:
        texts = [text for job in jobs for text in job.texts]
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                predictions = self.predictor.predict(texts, all_scores=all_scores, batch_size=len(texts))
        except Exception as err:
            if len(jobs) > 1:  # find out whose input failed, so the others still get answers
                for job in jobs:
                    self._predict_group([job], all_scores)
            else:
                jobs[0].future.set_exception(err)
            return
        self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(texts))
        self.metrics.batch_requests.observe(len(jobs))
        self.metrics.predictions.inc(len(texts))
        start = 0
        for job in jobs:
            job.future.set_result(predictions[start : start + len(job.texts)])
            start += len(job.texts)

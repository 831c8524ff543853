"""The model in processes of its own, fed by the HTTP process: `paretune serve`'s default on a CPU.

In one process, HTTP work (parsing, auth, JSON, metrics) and the model share one interpreter and
one lock: every request's Python work waits for the model thread to let go of it, and on a small
machine the model's thread pool and the event loop fight over the same cores. Here the HTTP
process only queues texts; N model processes (model_process.py, one per core by default, one
thread each) run them.

Batching needs no timer. A batch goes to a model process the moment one is free, holding what is
queued (up to `max_batch_size` texts, split evenly when several processes are free). A lone
request therefore goes to the model at once, and under load the requests that arrive during a
pass form the next batch: batches grow with the load on their own.

Overload is handled as in batcher.py: a request is refused at the door (503) when the work
ahead of it would, at the measured time per text, keep it past its deadline; a queued job whose
caller gave up or whose deadline has passed is dropped before it reaches the model. A pass that
has overrun its estimate is not counted as nearly done: it is taken to need as long again.

A model process that dies (killed, out of memory) fails only the requests it held, with 503 and
Retry-After, and is started again. One that is stuck (its batch still running once every caller
in it has been answered 504) is killed and started again the same way. /readyz says 503 while
no process can answer. Everything here runs on the event loop (the pipes have threads of their
own, model_link.py): no locks.
"""
from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import shutil
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from paretune.errors import ParetuneError
from paretune.serving import model_process
from paretune.serving.batcher import Overloaded
from paretune.serving.model_link import ModelLink
from paretune.serving.metrics import ServerMetrics

log = logging.getLogger("paretune.serve")

PRELOAD = ["paretune.serving.model_process", "paretune.serving.loading", "paretune.predictor"]
_EWMA = 0.3  # weight of the newest pass in the running estimate of seconds per text
# A batch still running this long after the last of its callers was answered 504 is stuck: its
# process is killed and replaced (nobody waits for the answer, and it holds a core).
STUCK_GRACE_S = 1.0
# Requests are let in only while the work ahead of them fits in this share of the timeout: the
# estimate is an average over texts of every length, and a request let in should be answered.
ADMIT_SHARE = 0.8


class ModelFailed(RuntimeError):
    """The model raised on this request's input; the model process's traceback is in the log (500)."""


@dataclass(eq=False)
class _Job:
    texts: list
    all_scores: bool
    enqueued: float
    deadline: float
    future: asyncio.Future
    counted: bool = True  # its texts count against max_queue


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.Process
    link: ModelLink | None = None  # its pipe (None only in tests)
    ready: bool = False  # warmed up
    stuck: bool = False  # killed for overrunning its batch; its end is on its way
    jobs: list[_Job] | None = None  # the batch it is running
    sent: float = 0.0  # when that batch was sent
    expected_s: float = 0.0  # what that batch should take, at the measured time per text
    stuck_at: float = math.inf  # past this, that batch is stuck

    @property
    def can_answer(self) -> bool:
        return self.ready and not self.stuck


@dataclass
class PoolOptions:
    run_dir: Path
    processes: int
    threads: int = 1
    nice: int = 0  # added to the model processes' niceness (lower CPU priority than the HTTP process)
    device: str | None = None
    trust_remote_code: bool = False
    engine: str = "auto"
    max_batch_size: int = 32
    max_queue: int = 1024
    timeout_s: float = 30.0
    predictor: object | None = field(default=None, repr=False)  # the server's copy, to export from


class ModelPool:
    """The interface of batcher.MicroBatcher (start, incoming, submit, ready, close), over processes."""

    def __init__(self, options: PoolOptions, metrics: ServerMetrics, clock=time.monotonic):
        self.options, self.metrics, self.clock = options, metrics, clock
        self.ready = threading.Event()
        self.lost = False  # was ready once, and no process can answer now
        self.warm_up_error: str | None = None
        self.text_s = 0.0  # measured seconds per text of one process
        self._workers: list[_Worker] = []
        self._pending: deque[_Job] = deque()
        self._queued_texts = 0
        self._accepting = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._folder: Path | None = None  # the ONNX export, deleted on close
        self._onnx_path: str | None = None
        self._starting: asyncio.Task | None = None
        self._watching: asyncio.Task | None = None

    # --- start and stop ---------------------------------------------------------------------
    def start(self) -> None:
        """Export (if the engine says so) and start the processes, in the background: /readyz
        answers 503 until a process has loaded and warmed up the model."""
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._starting = self._loop.create_task(self._start())
        self._watching = self._loop.create_task(self._watch())

    async def _start(self) -> None:
        try:  # the fork server imports torch while this process exports the model
            self._onnx_path, _ = await asyncio.gather(asyncio.to_thread(self._export),
                                                      asyncio.to_thread(_fork_server))
        except Exception as err:  # the server stays up to say why on /readyz and in the log
            self.warm_up_error = str(err) if isinstance(err, ParetuneError) else f"{type(err).__name__}: {err}"
            log.error("the model processes cannot start: %s", self.warm_up_error)
            return
        for _ in range(self.options.processes):
            await self._add_worker()

    def _export(self) -> str | None:
        from paretune.serving.onnx_engine import onnx_for_serving

        predictor = self.options.predictor
        if predictor is None:
            return None
        self._folder = Path(tempfile.mkdtemp(prefix="paretune-serve-"))
        path = onnx_for_serving(predictor, self.options.engine, self._folder)
        return str(path) if path else None

    async def _add_worker(self) -> None:
        # In a thread: the first start waits for the fork server to import torch (seconds).
        process, conn = await asyncio.to_thread(self._start_process)
        worker = _Worker(process)
        if not self._accepting:  # closed meanwhile
            conn.send(None)
            conn.close()
            return
        self._workers.append(worker)
        worker.link = ModelLink(conn, self._loop, lambda message: self._received(worker, message),
                                lambda: self._lost(worker))

    def _start_process(self) -> tuple[multiprocessing.Process, object]:
        # Never fork this process (its torch thread pools may be running). A fork server is a fresh
        # interpreter that imports torch and the model code once, before any thread starts, and
        # forks each model process from there: the second process, and a replacement for one
        # that died, start without importing torch and transformers again.
        context = _fork_server()
        parent, child = context.Pipe()
        o = self.options
        process = context.Process(target=model_process.main, name="paretune-model", daemon=True,
                                  args=(child, str(o.run_dir), o.device, o.trust_remote_code, o.threads,
                                        self._onnx_path, o.nice))
        process.start()
        child.close()  # the child's end lives in the child: EOF here when it dies
        return process, parent

    async def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, let the queued ones finish (up to `timeout`), stop the processes."""
        self._accepting = False
        deadline = self.clock() + (timeout or 0)
        # A stuck batch does not hold this up past its callers' deadlines: the watchdog kills it.
        while (self._pending or any(w.jobs for w in self._workers)) and self.clock() < deadline:
            await asyncio.sleep(0.01)
        for task in (self._starting, self._watching):
            if task is not None:
                task.cancel()
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.link.send(None)
        # A process that does not exit at once (stopped, stuck in a pass) is killed.
        await asyncio.to_thread(_join, [w.process for w in workers], 3.0)
        for worker in workers:
            self._fail(worker.jobs, Overloaded("the server is shutting down"))
        while self._pending:
            self._pending.popleft().future.cancel()
        self.ready.clear()
        self.metrics.ready.set(0)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    # --- requests (event loop) ----------------------------------------------------------------
    @contextmanager
    def incoming(self):
        """Kept for the handlers' sake: batches here never wait for requests on their way."""
        yield

    def submit(self, texts: list, all_scores: bool) -> asyncio.Future:
        now = self.clock()
        if not self._accepting:
            raise Overloaded("the server is shutting down")
        if not any(w.can_answer for w in self._workers):  # /readyz says 503 too
            raise Overloaded("no model process can answer yet (starting, or replacing one that stopped)", 2.0)
        queued = self._queued_texts + len(texts)
        wait_s = self.expected_wait_s(queued)
        if queued > self.options.max_queue:
            raise Overloaded(f"{self._queued_texts} texts are already waiting for the model", wait_s)
        # With every process idle and nothing queued the request is let in whatever the estimate
        # says: it is the batch that measures the model again. Without it, one slow batch (a loaded
        # machine) could price every request out, and with no batch run the price never came down.
        idle = not self._pending and all(w.jobs is None for w in self._workers)
        if wait_s > ADMIT_SHARE * self.options.timeout_s and not idle:
            raise Overloaded(f"the work ahead would take {wait_s:.1f} s, too close to the "
                             f"{self.options.timeout_s:g} s timeout", wait_s - ADMIT_SHARE * self.options.timeout_s)
        job = _Job(texts, all_scores, now, now + self.options.timeout_s, self._loop.create_future())
        self._queued_texts = queued
        job.future.add_done_callback(lambda _: self._uncount(job))  # a caller that gave up frees room
        self._pending.append(job)
        self._dispatch()
        return job.future

    def expected_wait_s(self, queued_texts: int) -> float:
        """When `queued_texts` would be done: what the busy processes have left, then the queued
        texts at the measured time per text, spread over the processes that can answer."""
        now = self.clock()
        busy_s = sum(self._remaining_s(w, now) for w in self._workers if w.jobs is not None)
        able = max(1, sum(w.can_answer for w in self._workers))
        return (busy_s + queued_texts * self.text_s) / able

    @staticmethod
    def _remaining_s(worker: _Worker, now: float) -> float:
        """How long a busy process will take yet. A pass that has run past its estimate is not
        about to finish: it is taken to need as long again as it has run."""
        elapsed = now - worker.sent
        return worker.expected_s - elapsed if elapsed < worker.expected_s else elapsed

    def _uncount(self, job: _Job) -> None:
        if job.counted:
            job.counted = False
            self._queued_texts -= len(job.texts)

    def _dispatch(self) -> None:
        """Hand queued jobs to every free process, the queued texts split evenly among them."""
        idle = [w for w in self._workers if w.can_answer and w.jobs is None]
        while idle and self._pending:
            share = min(self.options.max_batch_size, max(1, math.ceil(self._queued_texts / len(idle))))
            # Nothing running anywhere: the first job is sent whatever the estimate (see submit).
            jobs = self._take(share, probe=all(w.jobs is None for w in self._workers))
            if jobs:
                self._send(idle.pop(), jobs)

    def _take(self, share: int, probe: bool = False) -> list[_Job]:
        """Queued jobs for one batch of about `share` texts; drops those nobody waits for any more.

        A batch is answered when all of it is done, so a job joins only if the batch with it still
        ends before the first job's deadline (the earliest: jobs queue in order); else it waits
        for the next batch."""
        jobs, size, now = [], 0, self.clock()
        while self._pending and size < share:
            job = self._pending[0]
            if jobs and (size + len(job.texts) > self.options.max_batch_size
                         or now + self.text_s * (size + len(job.texts)) > jobs[0].deadline):
                break
            self._pending.popleft()
            self._uncount(job)
            if job.future.done():  # its caller gave up
                continue
            if now + self.text_s * len(job.texts) > job.deadline and not (probe and not jobs):  # a 504 first
                job.future.set_exception(Overloaded("it could not be served within the timeout"))
                continue
            jobs.append(job)
            size += len(job.texts)
            self.metrics.queue_wait.observe(now - job.enqueued)
        return jobs

    def _send(self, worker: _Worker, jobs: list[_Job]) -> None:
        worker.jobs, worker.sent = jobs, self.clock()
        worker.expected_s = self.text_s * sum(len(job.texts) for job in jobs)
        worker.stuck_at = max(job.deadline for job in jobs) + STUCK_GRACE_S
        worker.link.send((id(jobs), [(job.texts, job.all_scores) for job in jobs]))

    # --- a watchdog for stuck processes (event loop) -------------------------------------------
    async def _watch(self) -> None:
        period = min(0.5, self.options.timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            self._kill_stuck()

    def _kill_stuck(self) -> None:
        now = self.clock()
        for worker in self._workers:
            if worker.jobs is not None and not worker.stuck and now > worker.stuck_at:
                log.error("a model process has run one batch for %.1f s, past every caller's deadline; "
                          "killing it and starting another", now - worker.sent)
                worker.stuck = True
                self._fail(worker.jobs, Overloaded("the model process was stuck; retry"))
                worker.process.kill()  # its pipe reads EOF, and _lost starts another
        self._update_ready()

    def _update_ready(self) -> None:
        """Ready while some process can answer (after the first warm-up, whichever went first)."""
        if any(w.can_answer for w in self._workers):
            if not self.ready.is_set():
                self.ready.set()
                self.metrics.ready.set(1)
        elif self.ready.is_set():
            self.ready.clear()
            self.metrics.ready.set(0)
            self.lost = True  # /readyz says so, rather than "warming up"
            log.error("no model process can answer: not ready until one is back")

    # --- answers (event loop, from a process's reader thread) --------------------------------
    def _received(self, worker: _Worker, message) -> None:
        if worker not in self._workers or worker.stuck:  # closing, or killed: not to be trusted
            return
        if not worker.ready:
            self._started(worker, message)
        else:
            self._answered(worker, *message)
        self._dispatch()

    def _started(self, worker: _Worker, message: tuple) -> None:
        status, detail = message
        if status != "ready":
            self.warm_up_error = detail
            log.error("a model process could not load the model: %s", detail)
            return
        worker.ready = True
        self.text_s = self.text_s or detail
        if not self.ready.is_set():
            log.info("a model process warmed up (%.1f ms per text); ready for requests", detail * 1000)
        self._update_ready()

    def _answered(self, worker: _Worker, _batch_id: int, answers: list, seconds: float) -> None:
        jobs, worker.jobs = worker.jobs or [], None
        texts = sum(len(job.texts) for job in jobs)
        for job, (kind, value) in zip(jobs, answers):
            if job.future.done():
                continue
            if kind == "ok":
                job.future.set_result(value)
            elif kind == "user":
                job.future.set_exception(ParetuneError(value))
            else:
                log.error("the model failed on a request:\n%s", value)
                job.future.set_exception(ModelFailed("the model failed on this input"))
        if texts:
            self.text_s = (1 - _EWMA) * self.text_s + _EWMA * seconds / texts
            self.metrics.inference.observe(seconds)
            self.metrics.batch_size.observe(texts)
            self.metrics.batch_requests.observe(len(jobs))
            self.metrics.predictions.inc(texts)

    def _lost(self, worker: _Worker) -> None:
        """A process died: fail what it held (503, retry) and start another, unless stopping."""
        if worker not in self._workers:  # stopped by close()
            return
        self._workers.remove(worker)
        self._fail(worker.jobs, Overloaded("the model process stopped; retry"))
        self._update_ready()
        if not self._accepting:
            return
        if not worker.ready:  # it died loading the model: starting it again would do the same
            self.warm_up_error = self.warm_up_error or f"a model process exited (code {worker.process.exitcode})"
            return
        if not worker.stuck:
            log.error("a model process exited (code %s); starting another", worker.process.exitcode)
        self._loop.create_task(self._add_worker())

    @staticmethod
    def _fail(jobs: list[_Job] | None, error: Exception) -> None:
        for job in jobs or []:
            if not job.future.done():
                job.future.set_exception(error)


def _fork_server():
    """The fork server's context, the server started (it imports PRELOAD first)."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    return context


def _join(processes: list, timeout: float) -> None:
    """Wait for the processes to exit; terminate, then kill, the ones that do not."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)

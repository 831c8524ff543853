"""One model process of `paretune serve`: load the run, warm up, then answer batches over a pipe.

The HTTP process (model_pool.py) starts these from a fork server (never by forking itself: a
process that already runs torch's thread pools does not fork safely) and talks to each over its
own pipe. Messages, all plain Python objects:

    child -> parent   ("ready", seconds_per_text)  or  ("failed", "why")   once, after warm-up
    parent -> child   (batch_id, [(texts, all_scores), ...])  one entry per request
    child -> parent   (batch_id, [("ok", predictions) | ("user", message) | ("error", traceback)],
                       forward_seconds)
    parent -> child   None: finish and exit

The process runs at `nice` steps lower CPU priority than the HTTP process (`--model-nice`, 5 by
default): when the cores are short, reading requests and writing answers go first, so requests
do not queue behind a forward pass on the way in or out. The model runs with `threads` threads, one by default: a pass on one core wastes nothing on
thread hand-offs, and with one process per core the passes of different processes overlap
instead of queueing. SIGINT and SIGTERM are ignored here: a Ctrl-C or a supervisor's SIGTERM to
the whole process group must not kill the model under requests the server is still finishing;
the server stops these processes itself, and one whose server is gone (the pipe reads EOF) exits.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from paretune.errors import ParetuneError

# On a CPU, texts are run in groups of this many, sorted by length: a group of 32 texts pads
# every text to the longest one, which on SST-2 sentences costs ~40% more than groups of 4.
CPU_GROUP = 4


def main(conn, run_dir: str, device: str | None, trust_remote_code: bool, threads: int,
         onnx_path: str | None, nice: int = 0) -> None:
    """Entry point of the child process (a module-level function, so "spawn" can import it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if nice and hasattr(os, "nice"):  # below the HTTP process: its event loop never waits for a pass
        try:
            os.nice(nice)
        except OSError:
            pass
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch starts its pools
    os.environ["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"  # its own pool otherwise
    try:
        predictor, text_s = _load(Path(run_dir), device, trust_remote_code, threads, onnx_path)
    except Exception as err:  # the parent reports it and the server does not become ready
        conn.send(("failed", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", text_s))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server is gone: nobody is left to answer
            return
        if message is None:
            return
        batch_id, jobs = message
        started = time.perf_counter()
        answers = answer(predictor, jobs)
        conn.send((batch_id, answers, time.perf_counter() - started))


def _load(run_dir: Path, device, trust_remote_code: bool, threads: int, onnx_path: str | None):
    import torch

    from paretune.serving.loading import load_predictor

    torch.set_num_threads(threads)
    predictor = load_predictor(run_dir, device, trust_remote_code)
    if onnx_path:  # the server exported the model once for every process (onnx_engine.py)
        from paretune.serving.onnx_engine import use_onnx

        use_onnx(predictor, Path(onnx_path))
    sample = predictor.task.sample_input()
    with torch.inference_mode():
        predictor.predict([sample])
        started = time.perf_counter()
        predictor.predict([sample] * 8, batch_size=group_size(predictor))
    return predictor, (time.perf_counter() - started) / 8


def group_size(predictor) -> int:
    return CPU_GROUP if str(predictor.device) == "cpu" else 64


def answer(predictor, jobs: list[tuple[list, bool]]) -> list[tuple[str, object]]:
    """Each job's predictions, or why it failed; one bad input fails only its own request."""
    import torch

    answers: list[tuple[str, object] | None] = [None] * len(jobs)
    for all_scores in (False, True):  # all_scores changes what a prediction holds: one pass each
        indices = [i for i, (_, scores) in enumerate(jobs) if scores == all_scores]
        if not indices:
            continue
        texts = [text for i in indices for text in jobs[i][0]]
        try:
            with torch.inference_mode():
                predictions = predictor.predict(texts, all_scores=all_scores, batch_size=group_size(predictor))
        except Exception:
            if len(indices) == 1:
                answers[indices[0]] = _failure()
            else:  # find whose input failed, so the others still get answers
                for i in indices:
                    answers[i] = answer(predictor, [jobs[i]])[0]
            continue
        start = 0
        for i in indices:
            count = len(jobs[i][0])
            answers[i] = ("ok", predictions[start : start + count])
            start += count
    return answers  # type: ignore[return-value]


def _failure() -> tuple[str, str]:
    err = sys.exc_info()[1]
    if isinstance(err, ParetuneError):  # bad input: the caller is told why (422)
        return ("user", str(err))
    return ("error", traceback.format_exc())  # a bug or a broken model: logged by the server (500)

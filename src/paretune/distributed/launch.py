"""`paretune train --nproc N`: start N training processes on this machine and wait for them.

The processes are started by torch's own launcher (torch.distributed.run, what `torchrun` runs),
from this process, with a rendezvous on a free local port. Each runs `paretune.distributed.worker`,
which trains exactly as `paretune train` does under torchrun or accelerate launch. Whether to
launch is decided once, by runner.finetune / runner.resume (`should_launch`); by then the config
is validated and its run folder named, so every process knows the folder, and a config error
shows once instead of N times.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import yaml

from paretune.config.schema import Config
from paretune.engine.checkpoint import check_world_size, list_checkpoints
from paretune.engine.threads import ThreadChoice, choose_threads
from paretune.errors import ParetuneError, TrainingError

ERROR_DIR_ENV = "PARETUNE_ERROR_DIR"  # where workers leave the message of an error a user can fix
USER_ERROR_EXIT = 2


def launched() -> bool:
    """Whether this process is one of several started by torchrun, accelerate launch or us."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def should_launch(nproc: int) -> bool:
    return nproc > 1 and not launched()


def launch_training(config: Config) -> Path:
    """Train `config` on config.distributed.nproc local processes; returns the run folder.
    output.dir was settled when the config was loaded, so every process opens the same folder."""
    with tempfile.TemporaryDirectory(prefix="paretune-launch-") as tmp:
        # The validated config, paths already resolved: workers read it without re-resolving.
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        _run_workers(config.distributed.nproc, ["--config", str(path)], Path(tmp))
    return Path(config.output.dir)


def launch_resume(run_dir: Path, nproc: int) -> None:
    """Continue a run on `nproc` local processes; the newest checkpoint must have that many."""
    checkpoints = list_checkpoints(Path(run_dir) / "checkpoints")
    if checkpoints:  # fail here, before starting processes that would all fail the same way
        check_world_size(checkpoints[-1], nproc)
    with tempfile.TemporaryDirectory(prefix="paretune-launch-") as tmp:
        _run_workers(nproc, ["--resume", str(run_dir)], Path(tmp))


def _run_workers(nproc: int, worker_args: list[str], scratch: Path) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([
        "--standalone",  # rendezvous on this machine, on a free port: concurrent runs don't collide
        f"--nproc-per-node={nproc}",
        "--max-restarts=0",
        "--module", "paretune.distributed.worker", *worker_args,
    ])
    # torchrun would give each process one thread; share the cores this process may use instead
    # (its affinity and cgroup quota, as a single run counts them: engine/threads.py).
    threads = os.environ.get("OMP_NUM_THREADS") or str(worker_threads(nproc))
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", ERROR_DIR_ENV)}
    os.environ.update({"OMP_NUM_THREADS": threads, ERROR_DIR_ENV: str(scratch)})
    # The launcher's own lines on a failure ("failed (exitcode: 2) local_rank: 1 ...") repeat
    # what the error raised below says in words.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as err:
        raise _launch_error(err, scratch) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def worker_threads(nproc: int, choice: ThreadChoice | None = None) -> int:
    """Threads per process: the cores this process may use (affinity, cgroup quota), shared out."""
    choice = choice or choose_threads(environ={})
    return max(1, choice.threads // nproc)


def _launch_error(err, scratch: Path) -> ParetuneError:
    messages = sorted(scratch.glob("error-*.json"))
    if messages:  # a config, data or run-folder problem: show it as a one-process run would
        return ParetuneError(json.loads(messages[0].read_text())["message"])
    rank, failure = min(err.failures.items())
    how = f"signal {-failure.exitcode}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return TrainingError(f"{len(err.failures)} training process(es) failed, process {rank} with {how}: "
                         "see its messages above")


def record_user_error(rank: int, message: str) -> None:
    """Worker side: leave the message for the launching process (when there is one)."""
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder and Path(folder).is_dir():
        (Path(folder) / f"error-{rank:05d}.json").write_text(json.dumps({"message": message}))

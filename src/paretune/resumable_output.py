"""One JSON-lines output per input row, written as it goes: resumable, finished atomically, one job
at a time. `paretune predict` and `paretune generate` both write through it.

Beside OUTPUT, while a job runs:
- OUTPUT.partial holds the complete lines so far, flushed to disk after every chunk;
- OUTPUT.partial.json (the stamp) records what those lines answer: the input's path, size and
  modification time, the run, the options and the row count. A partial whose stamp differs (another
  input, run or options) is started over, never resumed into;
- OUTPUT.lock is held (`flock`) by the job writing: a second job on the same OUTPUT is refused,
  naming the file, instead of both appending rows.

A kill can leave half a line at the end of the partial: it is cut off and its row done again, and
the last complete line must carry the row number its position says, else the job starts over.
OUTPUT appears only when every row is done (an atomic rename under the lock).
"""
from __future__ import annotations

import json
import logging
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from paretune.errors import ParetuneError
from paretune.run_folder import atomic_write

log = logging.getLogger("paretune")

TERMINATED_EXIT = 143  # 128 + SIGTERM, what a shell reports for a job stopped by SIGTERM


def check_output(input: Path, output: Path, overwrite: bool) -> None:
    """Refuse an output that would replace something the user had, before any work is done.

    The finished file replaces `output` atomically, so a mistyped `--output train.csv` would lose
    that file. Replacing is allowed for earlier outputs of ours (a rerun), or with --overwrite.
    """
    if output.is_dir():
        raise ParetuneError(f"--output {output} is a folder: name a file, e.g. {output / 'predictions.jsonl'}")
    if not output.exists():
        return
    if output.resolve() == input.resolve():
        raise ParetuneError(f"--output {output} is the input file: the answers would replace it; "
                            "choose another --output")
    if not overwrite and not _is_our_output(output):
        raise ParetuneError(f"--output {output} already exists and was not written by paretune: "
                            "choose another --output, or pass --overwrite to replace it")


def _is_our_output(path: Path) -> bool:
    """Whether `path` looks like our own output: empty, or JSON lines whose first has a "row"."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        return not first.strip() or "row" in json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return False


def input_stamp(path: Path) -> dict[str, Any]:
    """The input's path, size and newest modification time: a changed input is not resumed into."""
    path = Path(path)
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return {"input": str(path.resolve()), "size": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


class ResumableOutput:
    """`with ResumableOutput(output, stamp, rows=n) as out:` skip `out.done` rows, `out.write(records)`
    per chunk, then `out.finish()`. `row_of(k)` is the row number the k-th line carries (1-based)."""

    def __init__(self, output: Path, stamp: dict[str, Any], *, rows: int, restart: bool = False,
                 row_of: Callable[[int], Any] = lambda k: k, command: str = "paretune"):
        self.output = Path(output)
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.state_file = self.output.with_name(self.output.name + ".partial.json")
        self.stamp, self.rows, self.restart, self.row_of = {**stamp, "rows": rows}, rows, restart, row_of
        self.lock = OutputLock(self.output.with_name(self.output.name + ".lock"), self.output, command)
        self.done = 0
        self._file = None

    def __enter__(self) -> "ResumableOutput":
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self.done = 0 if self.restart else self._resume_point()
            self._file = open(self.partial, "a", encoding="utf-8")
            if self.done == 0:
                self._file.truncate(0)
                atomic_write(self.state_file, json.dumps(self.stamp, indent=2) + "\n")
            else:
                log.info("%s: %d of %d rows already done; continuing", self.partial, self.done, self.rows)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Append one chunk's records, one JSON line each, and put them on disk."""
        self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())  # a chunk on disk is a chunk a resumed job need not redo

    def finish(self) -> Path:
        self._file.close()
        os.replace(self.partial, self.output)  # still under the lock: no second job starts on it meanwhile
        self.state_file.unlink(missing_ok=True)
        return self.output

    def __exit__(self, *exc) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        self.lock.release()

    def _resume_point(self) -> int:
        """Complete lines in the partial for this very input, run and options (0: start over)."""
        if not (self.partial.is_file() and self.state_file.is_file()):
            return 0
        try:
            saved = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        if saved != self.stamp:
            log.warning("%s was written for another input, run or options; starting over", self.partial)
            return 0
        done, kept, last = 0, 0, b""
        with open(self.partial, "rb") as f:
            for line in f:  # streams: the partial file can be as large as the output
                if not line.endswith(b"\n"):
                    break  # half a line left by a kill: cut off below, its row done again
                done, kept, last = done + 1, kept + len(line), line
        try:
            consistent = done == 0 or (done <= self.rows and json.loads(last)["row"] == self.row_of(done))
        except (ValueError, KeyError, TypeError):
            consistent = False
        if not consistent:
            log.warning("%s does not end where its rows say; starting over", self.partial)
            return 0
        os.truncate(self.partial, kept)
        return done


class OutputLock:
    """An exclusive `flock` on OUTPUT.lock, held while one job writes OUTPUT; removed when it ends.

    The file is unlinked before it is unlocked, and a job that locked a file since unlinked tries
    again, so two jobs never hold locks on two different files of the same name.
    """

    def __init__(self, path: Path, output: Path, command: str):
        self.path, self.output, self.command = path, output, command
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; resuming still works
            return
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ParetuneError(f"another `{self.command}` is writing {self.output} (it holds {self.path}): "
                                    "wait for it to finish, or choose another --output") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
            else:  # the holder finished and removed it between our open and our lock
                os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing releases the lock
        self._fd = None


@contextmanager
def exit_on_sigterm(partial: Path) -> Iterator[None]:
    """SIGTERM (a supervisor, `kill`, a scheduler's time limit) ends the job as Ctrl-C would: the
    chunk in progress is dropped, the lines already written stay in the partial file, the lock is
    released, and the process exits with status 143 and a line saying how to continue."""
    def stop(signum, frame):
        log.error("terminated; the rows done so far are in %s: run the same command again to continue", partial)
        raise SystemExit(TERMINATED_EXIT)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a library caller's worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""The pipe between the HTTP process and one model process, read and written by threads of its own.

The event loop never touches the pipe. It once watched the pipe for answers (`add_reader`), and
uvloop (libuv) makes every descriptor it watches non-blocking: `Connection.send` of a batch larger
than the pipe holds (32 texts of 10,000 characters are 320 KB; a pipe holds about 200 KB) then
wrote part of the message and raised BlockingIOError, which was taken for a dead process and
swallowed, and the model process waited forever for the rest of the message. Here the pipe stays
blocking: a writer thread sends whole messages, in order (multiprocessing frames each with its
length), however long the model process takes to read them, without holding up the event loop;
a reader thread receives whole answers and hands them to the loop. When the model process is
gone (exited, killed), the reader reads EOF, the writer's send fails, and the loop is told once.
"""
from __future__ import annotations

import asyncio
import os
import queue
import threading
from typing import Callable

_CLOSE = object()


class ModelLink:
    """Send messages to one model process; its messages, and its end, arrive on the event loop."""

    def __init__(self, conn, loop: asyncio.AbstractEventLoop, on_message: Callable[[object], None],
                 on_closed: Callable[[], None]):
        self._conn, self._loop = conn, loop
        self._on_message, self._on_closed = on_message, on_closed
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        os.set_blocking(conn.fileno(), True)  # whatever was done to it before: whole messages only
        self._writer = threading.Thread(target=self._write, name="paretune-model-send", daemon=True)
        self._reader = threading.Thread(target=self._read, name="paretune-model-recv", daemon=True)
        self._writer.start()
        self._reader.start()

    def send(self, message: object) -> None:
        """Queue a message; never blocks and never raises (a dead process is reported by on_closed)."""
        self._outbox.put(message)

    def _write(self) -> None:
        while (message := self._outbox.get()) is not _CLOSE:
            try:
                self._conn.send(message)  # blocking: returns once every byte is in the pipe
            except OSError:  # the process is gone: the reader reads EOF and reports it
                return

    def _read(self) -> None:
        try:
            while True:
                self._post(self._on_message, self._conn.recv())
        except (EOFError, OSError):  # the process exited or was killed
            pass
        self._outbox.put(_CLOSE)
        self._writer.join()  # its send fails at once now that the other end is closed
        self._conn.close()
        self._post(self._on_closed)

    def _post(self, callback, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the event loop is closed: the server has stopped
            pass

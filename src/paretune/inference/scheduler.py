"""Which sequences run: a bounded queue of waiting sequences and the running batch.

Iteration-level scheduling, as in vLLM and Orca: between two decode steps, waiting sequences join
the running batch while it has room, up to a budget of prompt tokens per step so that prefilling
newcomers never stalls the running streams for longer than one prefill; a sequence leaves the
batch in the step it finishes, and its row is free for the next newcomer at once.
"""
from __future__ import annotations

import threading
from collections import deque

from paretune.inference.sequence import Sequence


class QueueFull(Exception):
    """No room in the waiting queue (or the engine is stopping): retry after `retry_after_s`."""

    def __init__(self, reason: str, retry_after_s: float = 1.0):
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Scheduler:
    def __init__(self, max_running: int, max_queue: int, max_prefill_tokens: int):
        self.max_running, self.max_queue, self.max_prefill_tokens = max_running, max_queue, max_prefill_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in the order of the KV batch's rows
        self.lock = threading.Lock()  # front ends add from other threads

    def add(self, sequences: list[Sequence]) -> None:
        """Queue sequences (all or none)."""
        with self.lock:
            if len(self.waiting) + len(sequences) > self.max_queue:
                raise QueueFull(f"{len(self.waiting)} sequences are already waiting "
                                f"(at most {self.max_queue})")
            self.waiting.extend(sequences)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def admit(self) -> list[Sequence]:
        """Waiting sequences that join the batch this step (the oldest first); at least one when
        there is room, however long its prompt."""
        group: list[Sequence] = []
        with self.lock:
            while self.waiting and len(self.running) + len(group) < self.max_running:
                widest = max([len(s.prompt_ids) for s in group] + [len(self.waiting[0].prompt_ids)])
                if group and widest * (len(group) + 1) > self.max_prefill_tokens:
                    break  # padded to the widest prompt: that is what the prefill computes
                group.append(self.waiting.popleft())
        return group

    def drop_waiting(self, stopped: list[Sequence]) -> None:
        with self.lock:
            for sequence in stopped:
                self.waiting.remove(sequence)

    def snapshot_waiting(self) -> list[Sequence]:
        with self.lock:
            return list(self.waiting)

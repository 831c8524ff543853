"""The decoding engine: one forward pass per step over every running sequence, with their KV caches.

    scheduler.py  which sequences run this step (bounded queue, iteration-level batching)
    kv_batch.py   the running batch's left-padded KV cache, re-laid out when membership changes
    sequence.py   one request: tokens, text, stop strings, why it ended, who is told
    sampling.py   greedy or seeded sampling (temperature, top-p, top-k)

A step: sequences that were cancelled or ran past their deadline leave the batch (so a client that
went away costs at most one more step); newcomers are prefilled together, left-padded, and merged
into the batch (their first token comes from the prefill; those that arrived during a prefill that
started the batch get a second prefill before the decode); then one decode step runs the whole
batch, each row through its own adapter when the model carries several. Front ends either drive
`step()` themselves (`generate`: the CLI, eval, bench-infer) or let `start()` run steps in a
thread of their own (the server), and read each sequence's text through its `on_update`.
"""
from __future__ import annotations

import inspect
import logging
import threading
import time

import torch
from transformers.cache_utils import DynamicCache

from paretune.errors import ParetuneError
from paretune.inference.kv_batch import KVBatch
from paretune.inference.sampling import SamplingParams, sample_token
from paretune.inference.scheduler import QueueFull, Scheduler
from paretune.inference.sequence import CANCELLED, ERROR, Sequence

log = logging.getLogger("paretune.inference")

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
_EWMA = 0.2  # weight of the newest step in the running estimate of a step's duration
_PREFILL_ROUNDS = 2  # prefills in one step before its decode: streams wait at most one extra prefill


class EngineObserver:
    """What the engine reports as it runs (the server turns it into Prometheus metrics)."""

    def step(self, rows: int, seconds: float) -> None: ...
    def first_token(self, seconds: float) -> None: ...
    def token_gap(self, seconds: float) -> None: ...
    def tokens(self, count: int) -> None: ...
    def sizes(self, running: int, waiting: int) -> None: ...


def context_length(model) -> int | None:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class Engine:
    def __init__(self, model, tokenizer, device: torch.device | str = "cpu", *, max_running: int = 16,
                 max_queue: int = 1024, max_prefill_tokens: int = 8192, observer: EngineObserver | None = None):
        self.model, self.tokenizer, self.device = model, tokenizer, torch.device(device)
        from paretune.tasks.chat_format import end_of_turn_ids  # here: paretune.tasks imports this module

        if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
            raise ParetuneError("a prefix, prompt or p-tuning run keeps its virtual tokens in peft's own cache, "
                                "which the decoding engine cannot batch: answer it with paretune generate or "
                                "eval, or train it with LoRA to serve it")
        self.end_ids = end_of_turn_ids(tokenizer)
        if not self.end_ids:
            raise ParetuneError("the tokenizer has no EOS or end-of-turn token: generation would never stop")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.end_ids)
        self.context = context_length(model)
        self.scheduler = Scheduler(max_running, max_queue, max_prefill_tokens)
        self.kv = KVBatch()
        self.observer = observer or EngineObserver()
        # Unmerged LoRA adapters by name, which peft can mix row by row (`adapter_names`); a model
        # tuned by another peft method (AdaLoRA, prefix, prompt) answers through its one adapter.
        peft_config = getattr(model, "peft_config", None) or {}
        mixable = all(getattr(c.peft_type, "value", c.peft_type) == "LORA" for c in peft_config.values())
        self.adapters = set(peft_config) if mixable else set()
        parameters = _forward_parameters(model)
        self._keeps_logits = "logits_to_keep" in parameters
        # transformers renames past_key_values to cache (5.x deprecates the old name).
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self.step_s = 0.0  # measured seconds per step (EWMA)
        self.tokens_per_sequence = 64.0  # measured generated tokens per finished sequence (EWMA)
        self._step_started: float | None = None
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._accepting, self._stopping = True, False

    # --- front ends -------------------------------------------------------------------------
    def submit(self, sequences: list[Sequence]) -> list[Sequence]:
        """Queue sequences (all or none). ParetuneError for a prompt the model cannot take,
        QueueFull when the queue has no room."""
        for sequence in sequences:
            self._check(sequence)
        if not self._accepting:
            raise QueueFull("the engine is stopping")
        self.scheduler.add(sequences)
        with self._wake:
            self._wake.notify()
        self._report_sizes()
        return sequences

    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 adapter: str | None = None) -> list[Sequence]:
        """Finished sequences for these prompts, in order: stepped here, or by the engine's thread."""
        sequences = self.submit([Sequence(ids, params, adapter=adapter) for ids in prompts])
        if self._thread is None:
            while not all(s.finished for s in sequences):
                self.step()
        for sequence in sequences:
            sequence.done.wait()
            if sequence.error is not None:
                raise sequence.error
        return sequences

    def expected_wait_s(self) -> float:
        """How long a sequence queued now would wait for its first token (see `expected_wait_s`)."""
        return expected_wait_s(self.step_s, self._step_started, time.monotonic(), len(self.scheduler.waiting),
                               self._free_rows(), self.scheduler.max_running, self.tokens_per_sequence)

    def _free_rows(self) -> int:
        return self.scheduler.max_running - len(self.scheduler.running)

    def _check(self, sequence: Sequence) -> None:
        if not sequence.prompt_ids:
            raise ParetuneError("the prompt is empty: nothing to answer")
        if sequence.adapter is not None and sequence.adapter not in self.adapters:
            if not self.adapters and sequence.adapter == getattr(self.model, "active_adapter", None):
                sequence.adapter = None  # a method peft cannot mix by row answers through its active adapter
            else:
                raise ParetuneError(f"no adapter named {sequence.adapter!r} is loaded")
        if self.context is not None:
            room = self.context - len(sequence.prompt_ids)
            if room < 1:
                raise ParetuneError(f"the prompt has {len(sequence.prompt_ids)} tokens; the model's context "
                                    f"is {self.context} tokens")
            sequence.params.max_new_tokens = min(sequence.params.max_new_tokens, room)

    # --- the engine's own thread (servers) ----------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="paretune-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new sequences, let the queued ones finish (each has its deadline), end the thread."""
        self._accepting = False
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self.scheduler.has_work():
                    self._wake.wait()
                if self._stopping and not self.scheduler.has_work():
                    return
            try:
                self.step()
            except Exception as err:  # a bug or a device failure: fail what runs, keep serving
                log.exception("a decoding step failed")
                self._fail(list(self.scheduler.running), err)

    # --- one step -----------------------------------------------------------------------------
    def step(self) -> None:
        started = self._step_started = time.monotonic()
        try:
            self._drop_stopped(started)
            self._retire()  # their rows are free for newcomers in this very step
            newcomers, rounds = self.scheduler.admit(), 0
            while newcomers:
                self._prefill(newcomers)
                rounds += 1
                # Requests that arrived during that prefill (clients often start together) join before
                # the decode while every running row was just prefilled: its streams have their first
                # token and wait one more prefill at most, and the newcomers need not wait a whole step.
                # Admitting takes them off the queue, so only when this step will prefill them.
                if rounds == _PREFILL_ROUNDS or not self._all_just_prefilled():
                    break
                newcomers = self.scheduler.admit()
            self._drop_stopped(time.monotonic())  # a prefill can be long: deadlines may have passed
            self._retire()
            if self.scheduler.running:
                self._decode()
                self._retire()
        finally:  # a failed step is over too: the admission estimate must not wait for it
            self._step_started = None
        took = time.monotonic() - started
        self.step_s = took if not self.step_s else (1 - _EWMA) * self.step_s + _EWMA * took
        self.observer.step(self.kv.rows, took)
        self._report_sizes()

    def _all_just_prefilled(self) -> bool:
        return all(len(s.generated) <= 1 for s in self.scheduler.running)

    def _drop_stopped(self, now: float) -> None:
        """Sequences cancelled or past their deadline end here, before any more work is done."""
        stopped_waiting = []
        for sequence in self.scheduler.snapshot_waiting():
            reason = sequence.should_stop_early(now)
            if reason:
                sequence.finish(reason)
                stopped_waiting.append(sequence)
        self.scheduler.drop_waiting(stopped_waiting)
        for sequence in self.scheduler.running:
            reason = sequence.should_stop_early(now)
            if reason:
                sequence.finish(reason)

    def _prefill(self, group: list[Sequence]) -> None:
        """Run the newcomers' prompts together (left-padded), take their first tokens, merge them."""
        width = max(len(s.prompt_ids) for s in group)
        input_ids = torch.full((len(group), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, sequence in enumerate(group):
            input_ids[row, width - len(sequence.prompt_ids):] = torch.as_tensor(sequence.prompt_ids)
            mask[row, width - len(sequence.prompt_ids):] = 1
        # Positions count a row's own tokens only, as generate() numbers left-padded rows.
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        extra = {"logits_to_keep": 1} if self._keeps_logits else {}
        cache = DynamicCache()
        try:
            logits = self._forward(group, input_ids, mask, positions, cache, **extra)
        except Exception as err:
            log.exception("prefill of %d prompt(s) failed", len(group))
            self._fail(group, err, running=False)
            return
        self.scheduler.running.extend(group)
        self.kv.add(cache, mask.to(self.device))
        self._take_tokens(group, logits)

    def _decode(self) -> None:
        running = self.scheduler.running
        self.kv.grow()
        input_ids = torch.as_tensor([[s.generated[-1]] for s in running], dtype=torch.long)
        positions = torch.as_tensor([[s.length - 1] for s in running], dtype=torch.long)
        logits = self._forward(running, input_ids, self.kv.mask, positions, self.kv.cache)
        self._take_tokens(running, logits)

    def _forward(self, sequences: list[Sequence], input_ids, mask, positions, cache, **extra) -> torch.Tensor:
        if self.adapters:
            names = [s.adapter or BASE_ADAPTER for s in sequences]
            # Rows that all take the active adapter need no mixed batch (which peft supports for
            # fewer module types): the plain forward applies it.
            if any(name != getattr(self.model, "active_adapter", None) for name in names):
                extra["adapter_names"] = names
        with torch.inference_mode():
            out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                             position_ids=positions.to(self.device), use_cache=True,
                             **{self._cache_arg: cache}, **extra)
        return out.logits[:, -1]

    def _take_tokens(self, sequences: list[Sequence], logits: torch.Tensor) -> None:
        greedy = logits.argmax(-1).tolist()  # one transfer for every greedy, unconstrained row
        for row, sequence in enumerate(sequences):
            if sequence.finished:  # cancelled while the forward ran: its token is not wanted
                continue
            previous = sequence.last_token_at
            try:
                token = greedy[row] if sequence.params.greedy and sequence.constraint is None else \
                    self._constrained_token(sequence, logits[row])
                sequence.add_token(token, self.tokenizer, self.end_ids)
            except Exception as err:  # this request's grammar or text failed: it ends, the batch goes on
                sequence.finish(ERROR, err)
                continue
            if previous is None:
                self.observer.first_token(sequence.first_token_at - sequence.submitted)
            else:
                self.observer.token_gap(sequence.last_token_at - previous)
        self.observer.tokens(len(sequences))

    @staticmethod
    def _constrained_token(sequence: Sequence, logits: torch.Tensor) -> int:
        scores = logits.float()
        if sequence.constraint is not None:  # structured output: forbidden tokens at -inf
            scores = sequence.constraint.mask_logits(scores)
        return sample_token(scores, sequence.params, sequence.generator)

    def _retire(self) -> None:
        """Drop finished sequences' rows from the batch."""
        running = self.scheduler.running
        keep = [row for row, s in enumerate(running) if not s.finished]
        if len(keep) == len(running):
            return
        for sequence in running:
            if sequence.finished:
                n = len(sequence.generated)
                self.tokens_per_sequence = (1 - _EWMA) * self.tokens_per_sequence + _EWMA * n
        self.scheduler.running = [running[row] for row in keep]
        self.kv.keep(keep)

    def _fail(self, sequences: list[Sequence], err: BaseException, running: bool = True) -> None:
        """End these sequences with the error; after a failed decode step the batch's cache may be
        half-updated, so the whole running batch ends and the cache starts again empty."""
        for sequence in sequences:
            sequence.finish(ERROR, err)
        if running:
            for sequence in self.scheduler.running:
                sequence.finish(ERROR, err)
            self.scheduler.running = []
            self.kv = KVBatch()

    def cancel_all(self) -> None:
        for sequence in self.scheduler.snapshot_waiting() + list(self.scheduler.running):
            sequence.cancel(CANCELLED)

    def _report_sizes(self) -> None:
        self.observer.sizes(len(self.scheduler.running), len(self.scheduler.waiting))


def expected_wait_s(step_s: float, step_started: float | None, now: float, waiting: int, free_rows: int,
                    max_running: int, tokens_per_sequence: float) -> float:
    """The rest of the step now running (one that overruns its estimate is assumed to take as long
    again as it has so far, never to be about done), then one sequence's worth of steps for each
    full batch of sequences waiting ahead of a newcomer that finds no free row. An idle engine
    starts a newcomer at once."""
    step = 0.0
    if step_started is not None:
        elapsed = now - step_started
        step = max(step_s, elapsed) if elapsed > step_s else step_s - elapsed
    rounds = max(0, -(-(waiting + 1 - free_rows) // max_running))
    return step + rounds * tokens_per_sequence * step_s


def _forward_parameters(model) -> set[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


__all__ = ["Engine", "EngineObserver", "QueueFull", "SamplingParams", "Sequence", "context_length"]

"""The running batch's KV cache writes each decode step in place (no copy of the whole cache per
token), still gives generate()'s greedy tokens when its room runs out and rows join and leave; and a
request arriving during a prefill is prefilled before the step's decode (time to first token)."""
from __future__ import annotations

import pytest
import torch
from generation_fixtures import chat_tokenizer, tiny_llama_dir

from paretune.inference import kv_batch
from paretune.inference.engine import Engine, EngineObserver
from paretune.inference.sampling import SamplingParams
from paretune.inference.sequence import Sequence
from paretune.tasks.chat_format import end_of_turn_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = tiny_llama_dir(tmp_path_factory.mktemp("kv-llama"))
    return AutoModelForCausalLM.from_pretrained(folder).eval(), chat_tokenizer()


def _prompts(tokenizer, n: int) -> list[list[int]]:
    words = ["good film", "bad plot and a dull cast", "great", "awful", "a film", "dull dull dull"]
    return [tokenizer(f"review : {words[i % len(words)]} " + "film " * (i % 4), add_special_tokens=False)["input_ids"]
            for i in range(n)]


def _reference(model, tokenizer, prompt: list[int], max_new_tokens: int) -> list[int]:
    ids = torch.as_tensor([prompt])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=sorted(end_of_turn_ids(tokenizer)), pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_a_decode_step_writes_into_the_room_it_has_without_copying_the_cache(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    engine = Engine(model, tokenizer)
    engine.end_ids = {-1}  # never ends: every step decodes
    engine.submit([Sequence(p, SamplingParams(max_new_tokens=6)) for p in _prompts(tokenizer, 2)])
    engine.step()  # prefill, then the first decode
    layer = engine.kv.cache.layers[0]
    storage, width = layer.keys.untyped_storage().data_ptr(), layer.keys.shape[-2]
    engine.step()
    layer = engine.kv.cache.layers[0]
    assert layer.keys.shape[-2] == width + 1
    assert layer.keys.untyped_storage().data_ptr() == storage  # the same buffer: written in place


def test_greedy_tokens_equal_generate_when_the_room_runs_out_while_rows_join_and_leave(model_and_tokenizer,
                                                                                     monkeypatch):
    model, tokenizer = model_and_tokenizer
    monkeypatch.setattr(kv_batch, "ROOM", 2)  # reallocate every other step
    prompts = _prompts(tokenizer, 6)
    expected = [_reference(model, tokenizer, p, 10) for p in prompts]
    engine = Engine(model, tokenizer, max_running=3)
    sequences = [Sequence(p, SamplingParams(max_new_tokens=10 - (i % 3))) for i, p in enumerate(prompts)]
    engine.submit(sequences)
    while not all(s.finished for s in sequences):
        engine.step()
    for sequence, reference in zip(sequences, expected):
        assert sequence.generated == reference[: sequence.params.max_new_tokens]


class _ArrivesDuringPrefill(EngineObserver):
    """Submits `late` when the first prefill's first token is taken: a request that arrived meanwhile."""

    def __init__(self):
        self.engine, self.late = None, None

    def first_token(self, seconds: float) -> None:
        if self.late is not None and not self.late.submitted_to_engine:
            self.late.submitted_to_engine = True
            self.engine.submit([self.late])


def test_a_request_arriving_during_a_prefill_gets_its_first_token_before_the_decode(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    early, late = _prompts(tokenizer, 2)
    observer = _ArrivesDuringPrefill()
    engine = Engine(model, tokenizer, observer=observer)
    observer.engine = engine
    observer.late = Sequence(late, SamplingParams(max_new_tokens=4))
    observer.late.submitted_to_engine = False
    first = Sequence(early, SamplingParams(max_new_tokens=4))
    engine.submit([first])
    engine.step()
    # Both prefilled, then one decode over both: the late one did not wait for a step of its own.
    assert len(observer.late.generated) == 2 and len(first.generated) == 2
    while not (first.finished and observer.late.finished):
        engine.step()
    assert first.generated == _reference(model, tokenizer, early, 4)
    assert observer.late.generated == _reference(model, tokenizer, late, 4)


class _KeepsArriving(EngineObserver):
    """Submits the next of `late` whenever a first token is taken: requests arriving during every
    prefill, more of them than one step prefills."""

    def __init__(self, engine, late: list[Sequence]):
        self.engine, self.late = engine, list(late)

    def first_token(self, seconds: float) -> None:
        if self.late:
            self.engine.submit([self.late.pop(0)])


def test_requests_arriving_during_every_prefill_all_finish(model_and_tokenizer):
    """The step prefills at most twice; the one that arrives during its last prefill stays queued
    for the next step (it was once taken off the queue and lost: its client waited forever)."""
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer, 5)
    engine = Engine(model, tokenizer)
    sequences = [Sequence(p, SamplingParams(max_new_tokens=3)) for p in prompts]
    engine.observer = _KeepsArriving(engine, sequences[1:])
    engine.submit(sequences[:1])
    for _ in range(20):
        if not engine.scheduler.has_work():
            break
        engine.step()
    assert all(s.finished for s in sequences) and not engine.scheduler.has_work()
    for sequence, prompt in zip(sequences, prompts):
        assert sequence.generated == _reference(model, tokenizer, prompt, 3)

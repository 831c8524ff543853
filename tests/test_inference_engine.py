"""The decoding engine on a tiny random Llama: greedy answers token-identical to transformers'
generate(), requests joining and leaving the running batch between steps, seeded sampling, stop
strings, cancellation and deadlines within one step, the bounded queue, and the engine serving
tasks/decoding.py (generate, eval)."""
from __future__ import annotations

import time

import pytest
import torch
from generation_fixtures import chat_tokenizer, tiny_llama_dir

from paretune.errors import ParetuneError
from paretune.inference.engine import Engine, QueueFull
from paretune.inference.sampling import SamplingParams
from paretune.inference.sequence import Sequence
from paretune.tasks.chat_format import end_of_turn_ids
from paretune.tasks.decoding import DecodeSettings, generate_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = tiny_llama_dir(tmp_path_factory.mktemp("engine-llama"))
    return AutoModelForCausalLM.from_pretrained(folder).eval(), chat_tokenizer()


def _prompts(tokenizer, n: int) -> list[list[int]]:
    words = ["good film", "bad plot and a dull cast", "great", "the review of a movie is positive ?",
             "awful", "a film", "sentiment : good", "dull dull dull"]
    return [tokenizer(f"review : {words[i % len(words)]} " + "film " * (i % 5), add_special_tokens=False)["input_ids"]
            for i in range(n)]


def _generate_reference(model, tokenizer, prompt: list[int], max_new_tokens: int) -> list[int]:
    """transformers' generate() on one unpadded prompt, greedy: what the engine must reproduce."""
    ids = torch.as_tensor([prompt])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=sorted(end_of_turn_ids(tokenizer)), pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_greedy_answers_are_token_identical_to_generate_while_requests_join_and_leave(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer, 10)
    expected = [_generate_reference(model, tokenizer, p, 12) for p in prompts]
    # 3 rows at a time and several lengths: newcomers are merged into a running batch whose rows
    # leave at different steps (end of turn or the length limit), and the rest wait in the queue.
    engine = Engine(model, tokenizer, max_running=3, max_prefill_tokens=40)
    sequences = [Sequence(p, SamplingParams(max_new_tokens=12 - (i % 4))) for i, p in enumerate(prompts)]
    engine.submit(sequences)
    seen_rows = set()
    while not all(s.finished for s in sequences):
        engine.step()
        seen_rows.add(engine.kv.rows)
    for sequence, reference in zip(sequences, expected):
        assert sequence.generated == reference[: sequence.params.max_new_tokens]
        assert sequence.finish_reason == ("stop" if sequence.generated[-1] in engine.end_ids else "length")
    assert 3 in seen_rows and engine.kv.rows == 0 and not engine.scheduler.has_work()


def test_generate_texts_runs_on_the_engine_and_keeps_the_order(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer, 6)
    texts = generate_texts(model, tokenizer, prompts, DecodeSettings(max_new_tokens=8, batch_size=4))
    for prompt, text in zip(prompts, texts):
        reference = _generate_reference(model, tokenizer, prompt, 8)
        assert text == tokenizer.decode([t for t in reference if t not in end_of_turn_ids(tokenizer)],
                                        skip_special_tokens=True)


def test_seeded_sampling_is_repeatable_whatever_shares_the_batch(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt = _prompts(tokenizer, 1)[0]
    params = SamplingParams(max_new_tokens=10, temperature=1.5, top_p=0.9, top_k=20, seed=7)
    alone = Engine(model, tokenizer).generate([prompt], params)[0].generated
    crowded = Engine(model, tokenizer).generate(_prompts(tokenizer, 4) + [prompt], params)[-1].generated
    other_seed = Engine(model, tokenizer).generate([prompt], SamplingParams(10, 1.5, 0.9, 20, seed=8))[0]
    assert alone == crowded
    assert other_seed.generated != alone


def test_stop_strings_cut_the_text_and_streaming_never_sends_what_is_cut(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt = _prompts(tokenizer, 1)[0]
    free = Engine(model, tokenizer).generate([prompt], SamplingParams(max_new_tokens=16))[0].text
    assert len(free.split()) >= 3, free
    stop = " ".join(free.split()[1:3])  # two words from the middle
    pieces = []
    sequence = Sequence(prompt, SamplingParams(max_new_tokens=16, stop=[stop]),
                        on_update=lambda update: pieces.append(update.text))
    engine = Engine(model, tokenizer)
    engine.submit([sequence])
    while not sequence.finished:
        engine.step()
    assert sequence.text == free[: free.find(stop)] and sequence.finish_reason == "stop"
    assert "".join(pieces) == sequence.text


def test_cancelled_and_timed_out_sequences_leave_within_one_step(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer, 3)
    engine = Engine(model, tokenizer, max_running=2)
    never_stops = SamplingParams(max_new_tokens=200)
    gone, queued = Sequence(prompts[0], never_stops), Sequence(prompts[2], never_stops)
    late = Sequence(prompts[1], never_stops, deadline=time.monotonic() + 60)
    engine.submit([gone, late, queued])
    engine.step()
    assert engine.kv.rows == 2 and len(engine.scheduler.waiting) == 1
    gone.cancel()
    late.deadline = time.monotonic()  # the caller's deadline passes
    engine.step()
    assert gone.finish_reason == "cancelled" and late.finish_reason == "timeout"
    assert engine.scheduler.running == [queued] and engine.kv.rows == 1  # the freed slot went to the queue
    queued.cancel()
    engine.step()
    assert not engine.scheduler.has_work()


def test_the_engine_thread_serves_until_stopped_and_refuses_past_the_queue(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer, 3)
    engine = Engine(model, tokenizer, max_running=1, max_queue=1)
    with pytest.raises(QueueFull):
        engine.submit([Sequence(p, SamplingParams()) for p in prompts[:2]])
    with pytest.raises(ParetuneError, match="context is 256 tokens"):
        engine.submit([Sequence([5] * 300, SamplingParams())])
    engine.start()
    try:
        answered = engine.generate([[5] * 250], SamplingParams(max_new_tokens=500))[0]  # capped at the context
        assert answered.finish_reason in ("stop", "length") and len(answered.generated) <= 6
    finally:
        engine.stop(5)
    assert not engine._thread.is_alive()


def test_bench_infer_times_generation_through_the_engine_consistently(model_and_tokenizer, tmp_path):
    from paretune.cost.generation_speed import generation_speed
    from paretune.cost.prices import Price
    from paretune.predictor import Predictor
    from paretune.tasks.generation import GenerationOptions, GenerationTask

    model, tokenizer = model_and_tokenizer
    predictor = Predictor(model, tokenizer, GenerationTask(GenerationOptions(), []), 64, torch.device("cpu"), tmp_path)
    price = Price(name="test", device="cpu", usd_per_hour=1.0, provider="test", instance="test", source="test",
                  date="2026-12-07")
    speed = generation_speed(predictor, ["good film", "bad plot", "great", "dull"], batch_size=4, price=price,
                             max_new_tokens=6)
    assert 0 < speed["time_to_first_token_ms"] <= speed["answer_latency_ms"]
    low, high = speed["tokens_per_s_batched_range"]
    assert low <= speed["tokens_per_s_batched"] <= high and speed["batched_repeats"] == 3
    cheap, dear = speed["usd_per_million_generated_tokens_range"]
    assert cheap <= speed["usd_per_million_generated_tokens"] <= dear


def test_structured_output_in_a_shared_batch_parses_and_validates():
    """The engine's per-sequence hook: constrained answers (greedy and sampled) decoded in one batch
    beside each other all parse and validate; a padded vocabulary row is never chosen."""
    import json

    jsonschema = pytest.importorskip("jsonschema")
    from bpe_fixtures import byte_bpe_tokenizer, tiny_bpe_llama

    from paretune.inference.structured import OutputConstraint

    tokenizer = byte_bpe_tokenizer()
    model = tiny_bpe_llama(tokenizer, extra_vocab=16)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    prompt = tokenizer.encode("give me json")
    sequences = [Sequence(prompt, SamplingParams(max_new_tokens=60, temperature=t, seed=seed),
                          constraint=OutputConstraint.from_response_format(tokenizer, response_format))
                 for t, seed in [(0, 0), (1.0, 1), (1.0, 2), (0.7, 3)]]
    engine = Engine(model, tokenizer, max_running=4)
    engine.submit(sequences)
    while not all(s.finished for s in sequences):
        engine.step()
    for sequence in sequences:
        assert sequence.finish_reason == "stop", (sequence.finish_reason, sequence.text, sequence.error)
        jsonschema.validate(json.loads(sequence.text), schema)


def test_an_empty_stop_string_stops_nothing_and_max_tokens_are_capped_at_the_context(model_and_tokenizer):
    """Issue 28: `generate --stop ''` cut every answer to its first token, and
    `--max-new-tokens 1000000` was not capped at the model's context."""
    model, tokenizer = model_and_tokenizer
    prompts = _prompts(tokenizer, 2)
    plain = generate_texts(model, tokenizer, prompts, DecodeSettings(max_new_tokens=8))
    assert generate_texts(model, tokenizer, prompts, DecodeSettings(max_new_tokens=8, stop=[""])) == plain
    huge = Sequence(prompts[0], SamplingParams(max_new_tokens=1_000_000))
    Engine(model, tokenizer).submit([huge])
    assert huge.params.max_new_tokens == 256 - len(prompts[0])


def test_generate_cuts_a_prompt_longer_than_the_context_from_the_left(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    long = [5] * 300 + _prompts(tokenizer, 1)[0]  # the context is 256 tokens
    assert len(generate_texts(model, tokenizer, [long], DecodeSettings(max_new_tokens=4))) == 1


def test_peft_models_the_engine_cannot_mix_answer_through_their_own_adapter(tmp_path):
    """AdaLoRA answers through its active adapter (peft mixes only LoRA rows); a prefix-tuned model
    keeps its virtual tokens in peft's own cache: the engine refuses it with a message, and
    generate_texts answers it through transformers' generate() instead."""
    from peft import AdaLoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tiny_llama_dir(tmp_path / "llama")
    tokenizer = chat_tokenizer()
    prompts = _prompts(tokenizer, 3)
    settings = DecodeSettings(max_new_tokens=4)
    adalora = get_peft_model(AutoModelForCausalLM.from_pretrained(folder),
                             AdaLoraConfig(total_step=10, target_modules=["q_proj", "v_proj"])).eval()
    assert Engine(adalora, tokenizer).adapters == set()
    assert len(generate_texts(adalora, tokenizer, prompts, settings)) == 3
    prefix = get_peft_model(AutoModelForCausalLM.from_pretrained(folder),
                            PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)).eval()
    with pytest.raises(ParetuneError, match="prefix, prompt or p-tuning"):
        Engine(prefix, tokenizer)
    assert len(generate_texts(prefix, tokenizer, prompts, settings)) == 3

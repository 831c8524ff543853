"""Serving speed of a generative run: time to first token, whole-answer latency, generated tokens
per second at batch 1 and batched, and dollars per million generated tokens (part of
`paretune bench-infer`).

Everything is measured through the decoding engine the server runs (paretune.inference: the saved
chat template, KV caches, continuous batching, stopping at the end of the turn), after a warm-up,
so the figures are what `paretune serve` costs. Time to first token and the whole answer's latency
come from the same batch-1 answers, so one is never larger than the other. The batched rate is
measured `BATCHED_REPEATS` times; the dollar figure uses the median and reports the spread, so two
runs can be ranked only when their ranges do not overlap.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from paretune.cost.prices import Price
from paretune.data.examples import Example
from paretune.inference.engine import Engine
from paretune.inference.sampling import SamplingParams
from paretune.predictor import Predictor

SINGLE_CALLS = 5  # batch-1 answers timed (first token and whole answer)
BATCHED_REPEATS = 3


def generation_speed(predictor: Predictor, texts: list, batch_size: int, price: Price | None,
                     max_new_tokens: int = 64, max_seconds: float = 60.0) -> dict[str, Any]:
    engine = Engine(predictor.model, predictor.tokenizer, predictor.device, max_running=max(batch_size, 1))
    prompts = [_prompt_ids(predictor, text) for text in texts]
    params = SamplingParams(max_new_tokens=max_new_tokens)  # greedy, as the run is evaluated
    engine.generate(prompts[:1], SamplingParams(max_new_tokens=4))  # allocation and kernel choice, untimed
    stop_at = time.perf_counter() + max_seconds
    first_ms, whole_ms, one_tokens, one_s = [], [], 0, 0.0
    for prompt in prompts[:SINGLE_CALLS]:
        sequence = engine.generate([prompt], params)[0]
        first_ms.append((sequence.first_token_at - sequence.submitted) * 1000)
        whole_ms.append((sequence.last_token_at - sequence.submitted) * 1000)
        one_tokens, one_s = one_tokens + len(sequence.generated), one_s + whole_ms[-1] / 1000
        if time.perf_counter() > stop_at:
            break
    batched = prompts[:batch_size]
    rates = []
    for _ in range(BATCHED_REPEATS):
        started = time.perf_counter()
        tokens = sum(len(s.generated) for s in engine.generate(batched, params))
        rates.append(tokens / (time.perf_counter() - started))
        if time.perf_counter() > stop_at:
            break
    per_s = float(np.median(rates))
    return {
        "time_to_first_token_ms": round(float(np.median(first_ms)), 2),
        "answer_latency_ms": round(float(np.median(whole_ms)), 2),
        "tokens_per_s_batch_1": round(one_tokens / one_s, 2) if one_s else None,
        "tokens_per_s_batched": round(per_s, 2),
        "tokens_per_s_batched_range": [round(min(rates), 2), round(max(rates), 2)],
        "batched_prompts": len(batched),
        "batched_repeats": len(rates),
        "max_new_tokens": max_new_tokens,
        "usd_per_million_generated_tokens": _usd(price, per_s),
        "usd_per_million_generated_tokens_range": [_usd(price, max(rates)), _usd(price, min(rates))],
        "engine": "paretune.inference (the server's)",
    }


def _prompt_ids(predictor: Predictor, text) -> list[int]:
    """A bench text as the server would answer it: the user's turn in the run's chat template."""
    task, tokenizer = predictor.task, predictor.tokenizer
    chat = task.prepare_tokenizer(tokenizer)
    example = Example([{"role": "user", "content": text}] if chat and isinstance(text, str) else text, None, 1)
    return task.prompt_ids(example, tokenizer, chat)


def _usd(price: Price | None, tokens_per_s: float) -> float | None:
    if price is None or tokens_per_s <= 0:
        return None
    return float(f"{price.usd_per_hour / (tokens_per_s * 3600) * 1e6:.4g}")

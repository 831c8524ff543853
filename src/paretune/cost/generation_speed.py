"""Serving speed of a generative run: time to first token, generated tokens per second at batch 1
and batched, and dollars per million generated tokens (part of `paretune bench-infer`).

Answers go through the task's own generation (the saved chat template, KV cache, left padding,
stopping at the end of the turn), as `paretune generate` and the server produce them. Generated
tokens are counted by re-tokenizing the answers, plus the end-of-turn token of each answer that
stopped before the limit.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from paretune.cost.prices import Price
from paretune.data.examples import Example
from paretune.predictor import Predictor
from paretune.tasks.decoding import DecodeSettings

FIRST_TOKEN_CALLS = 5


def generation_speed(predictor: Predictor, texts: list, batch_size: int, price: Price | None,
                     max_new_tokens: int = 64) -> dict[str, Any]:
    examples = [Example(text, None, i) for i, text in enumerate(texts, 1)]
    first = [_timed(predictor, [ex], DecodeSettings(max_new_tokens=1))[1] for ex in examples[:FIRST_TOKEN_CALLS]]
    one_tokens, one_s = 0, 0.0
    for ex in examples[:FIRST_TOKEN_CALLS]:
        tokens, seconds = _timed(predictor, [ex], DecodeSettings(max_new_tokens=max_new_tokens, batch_size=1))
        one_tokens, one_s = one_tokens + tokens, one_s + seconds
    batched = examples[:batch_size]
    many_tokens, many_s = _timed(predictor, batched, DecodeSettings(max_new_tokens=max_new_tokens,
                                                                     batch_size=len(batched)))
    per_s = many_tokens / many_s if many_s else 0.0
    usd = None if price is None or per_s <= 0 else float(f"{price.usd_per_hour / (per_s * 3600) * 1e6:.4g}")
    return {
        "time_to_first_token_ms": round(float(np.median(first)) * 1000, 2),
        "tokens_per_s_batch_1": round(one_tokens / one_s, 2) if one_s else None,
        "tokens_per_s_batched": round(per_s, 2),
        "batched_prompts": len(batched),
        "max_new_tokens": max_new_tokens,
        "usd_per_million_generated_tokens": usd,
    }


def _timed(predictor: Predictor, examples: list[Example], settings: DecodeSettings) -> tuple[int, float]:
    """(generated tokens, seconds) of answering `examples` at once."""
    started = time.perf_counter()
    answers = predictor.task.answer(predictor.model, predictor.tokenizer, examples, predictor.device, settings,
                                    text_is_user_turn=True)
    seconds = time.perf_counter() - started
    counted = predictor.tokenizer(answers, add_special_tokens=False)["input_ids"] if answers else []
    tokens = sum(min(len(ids) + 1, settings.max_new_tokens) for ids in counted)  # + the end of the turn
    return tokens, seconds

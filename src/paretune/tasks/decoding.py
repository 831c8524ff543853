"""Batched generation for `generate`, `eval` and `bench-infer`: prompts (token ids) through the one
decoding engine (paretune.inference), stopping at the end-of-turn tokens and at stop strings;
greedy by default, seeded sampling on request. The server submits to the same engine."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from paretune.inference.engine import Engine

log = logging.getLogger("paretune")
from paretune.inference.sampling import SamplingParams


@dataclass
class DecodeSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    batch_size: int = 16  # most sequences decoded together

    def sampling(self) -> SamplingParams:
        return SamplingParams(self.max_new_tokens, self.temperature, self.top_p, self.top_k,
                              [s for s in self.stop if s], self.seed)


def generate_texts(model, tokenizer, prompts: list[list[int]], settings: DecodeSettings,
                   device: torch.device | str = "cpu") -> list[str]:
    """One completion per prompt (token ids), in order. Prompts are sorted by length before they
    are queued, so each prefill pads little; the engine keeps `batch_size` sequences running and
    lets the next prompt in as soon as one finishes."""
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    try:
        engine = Engine(model, tokenizer, device, max_running=settings.batch_size, max_queue=len(prompts))
        prompts = fit_context(prompts, engine.context, settings.max_new_tokens)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        finished = engine.generate([prompts[i] for i in order], settings.sampling(), adapter=_active_adapter(model))
    finally:
        model.train(was_training)
    texts: list[str] = [""] * len(prompts)
    for i, sequence in zip(order, finished):
        texts[i] = sequence.text
    return texts



def _active_adapter(model) -> str | None:
    """A peft model not merged yet (a LoRA run scored during or after training) answers with its
    active adapter: the engine reads a sequence without an adapter name as the base model alone
    (the server's mixed batches), which scored LoRA runs as if they had not trained."""
    return getattr(model, "active_adapter", None) if getattr(model, "peft_config", None) else None


def fit_context(prompts: list[list[int]], context: int | None, max_new_tokens: int) -> list[list[int]]:
    """Prompts cut from the left (the end, where the question is, stays) so that each leaves room
    for its answer: `max_new_tokens`, or half the context when that is less."""
    if context is None:
        return prompts
    keep = context - min(max_new_tokens, context // 2)
    cut = sum(len(p) > keep for p in prompts)
    if cut:
        log.warning("%d prompt(s) longer than %d tokens were cut from the left to leave room for the answer in "
                    "the model's %d-token context", cut, keep, context)
    return [p[-keep:] if len(p) > keep else p for p in prompts]

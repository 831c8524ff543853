"""Batched generation for `generate`, `eval` and `bench-infer`: prompts (token ids) through the one
decoding engine (paretune.inference), stopping at the end-of-turn tokens and at stop strings;
greedy by default, seeded sampling on request. The server submits to the same engine."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from paretune.inference.engine import Engine

log = logging.getLogger("paretune")
from paretune.inference.sampling import SamplingParams


@dataclass
class DecodeSettings(SamplingParams):
    """A request's sampling settings, plus how many sequences a front end keeps decoding together."""
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
    if prompt_learning(model):
        return _generate_with_virtual_tokens(model, tokenizer, prompts, settings, device)
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


def prompt_learning(model) -> bool:
    """A prefix, prompt or p-tuning model: its virtual tokens live in peft's own cache handling,
    which the engine's batched cache cannot hold (the engine refuses such a model)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _generate_with_virtual_tokens(model, tokenizer, prompts, settings: DecodeSettings, device) -> list[str]:
    """transformers' generate() through peft, batch by batch (left-padded), for prompt-learning runs."""
    from transformers import GenerationConfig

    from paretune.tasks.chat_format import end_of_turn_ids

    end_ids = sorted(end_of_turn_ids(tokenizer))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    sampling = settings.temperature > 0
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, do_sample=sampling, eos_token_id=end_ids, pad_token_id=pad_id,
        **({"temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k or None}
           if sampling else {}))
    stops = [s for s in settings.stop if s]
    if stops:
        config.stop_strings = stops
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    torch.manual_seed(settings.seed)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), settings.batch_size):
            chunk = order[start:start + settings.batch_size]
            width = max(len(prompts[i]) for i in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                input_ids[row, width - len(prompts[i]):] = torch.as_tensor(prompts[i])
                attention[row, width - len(prompts[i]):] = 1
            with torch.no_grad():
                out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                     generation_config=config, tokenizer=tokenizer)
            for row, i in enumerate(chunk):
                text = tokenizer.decode(out[row, width:], skip_special_tokens=True)
                cut = min((text.find(s) for s in stops if s in text), default=-1)  # generate keeps the stop
                texts[i] = text[:cut] if cut >= 0 else text
    finally:
        model.train(was_training)
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

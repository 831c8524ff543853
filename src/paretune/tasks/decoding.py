"""Batched generation: left-padded prompts through `model.generate` with the KV cache, stopping at
the end-of-turn tokens and at stop strings; greedy by default, seeded sampling on request."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from paretune.tasks.chat_format import end_of_turn_ids


@dataclass
class DecodeSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    batch_size: int = 16


def generate_texts(model, tokenizer, prompts: list[list[int]], settings: DecodeSettings,
                   device: torch.device | str = "cpu") -> list[str]:
    """One completion per prompt (token ids), in order. Prompts are batched by length so little
    goes to padding; padding is on the left, so every row's next token follows its own prompt."""
    from transformers import GenerationConfig

    end_ids = sorted(end_of_turn_ids(tokenizer))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    sampling = settings.temperature > 0
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, do_sample=sampling, eos_token_id=end_ids, pad_token_id=pad_id,
        use_cache=True, **({"temperature": settings.temperature, "top_p": settings.top_p,
                            "top_k": settings.top_k or None} if sampling else {}),
        **({"stop_strings": list(settings.stop)} if settings.stop else {}),
    )
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    torch.manual_seed(settings.seed)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), settings.batch_size):
        chunk = order[start:start + settings.batch_size]
        width = max(len(prompts[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids = prompts[i]
            input_ids[row, width - len(ids):] = torch.as_tensor(ids)
            attention[row, width - len(ids):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                 generation_config=config, tokenizer=tokenizer)
        for row, i in enumerate(chunk):
            texts[i] = cut_at_stop(tokenizer.decode(out[row, width:], skip_special_tokens=True), settings.stop)
    model.train(was_training)
    return texts


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The text before the first stop string (generate stops after it, and keeps it)."""
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text

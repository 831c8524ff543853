"""How one sequence picks its next token: greedy, or sampled with its own seeded generator.

Each sequence samples with a `torch.Generator` of its own, seeded by its request: the same seed and
request give the same text whichever other requests share the batch. Temperature, top-k and
top-p act as in transformers' processors (temperature first, then the cuts).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    stop: list[str] = field(default_factory=list)
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def new_generator(params: SamplingParams) -> torch.Generator | None:
    """The sequence's own random stream (None when greedy: nothing is drawn)."""
    if params.greedy:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed)
    return generator


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """The next token from one row of float logits (-inf where a constraint forbids a token)."""
    if params.greedy:
        return int(logits.argmax())
    scores = logits.float().cpu() / params.temperature
    if params.top_k and params.top_k < scores.numel():
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        # Drop a token once the ones before it already reach top_p; the most likely always stays.
        drop = cumulative - ordered.softmax(-1) >= params.top_p
        drop[0] = False
        scores[order[drop]] = float("-inf")
    return int(torch.multinomial(scores.softmax(-1), 1, generator=generator))

"""The zero-shot recipe: embed each label's description; the nearest one wins. Nothing trains.

The head's rows are the descriptions' normalised embeddings times `scale`, so a text's logits are
scaled cosine similarities and softmax gives usable probabilities. Training cost is recorded as
$0: embedding a handful of descriptions once is not training (its seconds are in cost.json).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from paretune.config.schema import Config
from paretune.errors import ConfigError
from paretune.recipes.embedding_run import device, embed, load_body, start, write_run
from paretune.stored.embedding_head import EmbeddingClassifier

log = logging.getLogger("paretune")


def run(config: Config) -> Path:
    options = config.method
    phases: dict[str, float] = {}
    started = time.perf_counter()
    tokenizer, checked = start(config, "zero-shot")
    labels = checked.task.label_names
    unknown = sorted(set(options.descriptions) - set(labels))
    if unknown:
        raise ConfigError(f"method.descriptions names labels the task does not have: {unknown} "
                          f"(labels: {labels})")
    prompts = [options.template.format(options.descriptions.get(label, label)) for label in labels]
    phases["data_prep_s"] = time.perf_counter() - started
    started = time.perf_counter()
    body = load_body(config, checked.task).to(device()).eval()
    descriptions = embed(body, tokenizer, prompts, config.data.max_length)
    phases["describe_s"] = time.perf_counter() - started
    log.info("zero-shot | %s", "; ".join(f"{label}: {p!r}" for label, p in zip(labels, prompts)))
    model = EmbeddingClassifier(body, descriptions * options.scale, torch.zeros(len(labels))).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return write_run(config, checked, model, tokenizer, phases, 0, {"descriptions": dict(zip(labels, prompts))},
                     free=True)

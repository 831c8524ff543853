"""The few-shot recipe (SetFit, Tunstall et al. 2022), built on the packaged sentence-embedding body.

1. Draw `examples_per_class` labelled rows per class from data.train (seeded by data.seed).
2. Contrastive pairs: for each example, `iterations` times, one partner of its own class (target
   cosine similarity 1) and one of another class (target 0); capped at `max_pairs`.
3. Fine-tune the body so the cosine similarity of the pair's mean-pooled embeddings matches the
   target (mean squared error: sentence-transformers' CosineSimilarityLoss).
4. Fit a logistic regression (scikit-learn) on the examples' embeddings: the linear head.

We build it here instead of using the `setfit` package: setfit 1.2 would pull `evaluate`, aiohttp
and friends into the environment and sits on sentence-transformers' trainer, while this is ~100
lines over our own tokenizer, body and stored form, and saves like any run.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from paretune.config.schema import Config
from paretune.recipes.embedding_run import as_numpy, device, embed, load_body, start, write_run
from paretune.stored.embedding_head import EmbeddingClassifier, mean_pool

log = logging.getLogger("paretune")


def run(config: Config) -> Path:
    options = config.method
    phases: dict[str, float] = {}
    started = time.perf_counter()
    tokenizer, checked = start(config, "few-shot")
    shots = draw_examples(checked.train_targets, options.examples_per_class, config.data.seed)
    texts = [checked.train[i].text for i in shots]
    targets = [int(checked.train_targets[i]) for i in shots]
    phases["data_prep_s"] = time.perf_counter() - started
    started = time.perf_counter()
    body = load_body(config, checked.task).to(device())
    pairs = make_pairs(targets, options.iterations, options.max_pairs, config.training.seed)
    log.info("few-shot | %d examples (%s per class) | %d contrastive pairs x %d epochs | lr %.1e",
             len(texts), options.examples_per_class, len(pairs), options.epochs, options.lr)
    train_body(body, tokenizer, texts, pairs, options, config.data.max_length)
    weight, bias = fit_head(embed(body, tokenizer, texts, config.data.max_length), targets,
                            len(checked.task.label_names), options.head_c)
    phases["train_s"] = time.perf_counter() - started
    model = EmbeddingClassifier(body, weight, bias).eval()
    return write_run(config, checked, model, tokenizer, phases, len(texts),
                     {"examples_per_class": options.examples_per_class, "pairs": len(pairs),
                      "pair_steps": options.epochs * -(-len(pairs) // options.batch_size)})


def draw_examples(targets: list, per_class: int | None, seed: int) -> list[int]:
    """Row indices: `per_class` of each class (all of a class that has fewer), in a seeded order."""
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    rng = random.Random(seed)
    chosen = []
    for label in sorted(by_class):
        rows = by_class[label][:]
        rng.shuffle(rows)
        chosen += rows if per_class is None else rows[:per_class]
    rng.shuffle(chosen)
    return chosen


def make_pairs(targets: list[int], iterations: int, max_pairs: int, seed: int) -> list[tuple[int, int, float]]:
    """(i, j, target cosine) pairs: per example and iteration one positive and one negative."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(t, []).append(i)
    pairs = []
    for _ in range(iterations):
        for i, t in enumerate(targets):
            same = [j for j in by_class[t] if j != i] or [i]
            other = [j for c, rows in by_class.items() if c != t for j in rows]
            pairs.append((i, rng.choice(same), 1.0))
            if other:
                pairs.append((i, rng.choice(other), 0.0))
    rng.shuffle(pairs)
    return pairs[:max_pairs]


def train_body(body, tokenizer, texts: list[str], pairs, options, max_length: int) -> None:
    """Cosine-similarity regression on the pairs (AdamW, linear decay to 0)."""
    if options.epochs == 0 or not pairs:
        return
    body.train()
    steps = options.epochs * -(-len(pairs) // options.batch_size)
    optimizer = torch.optim.AdamW(body.parameters(), lr=options.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    dev = next(body.parameters()).device
    for _ in range(options.epochs):
        for start in range(0, len(pairs), options.batch_size):
            chunk = pairs[start:start + options.batch_size]
            left = _embed_with_grad(body, tokenizer, [texts[i] for i, _, _ in chunk], max_length, dev)
            right = _embed_with_grad(body, tokenizer, [texts[j] for _, j, _ in chunk], max_length, dev)
            target = torch.tensor([t for _, _, t in chunk], device=dev)
            loss = torch.nn.functional.mse_loss((left * right).sum(-1), target)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    body.eval()


def _embed_with_grad(body, tokenizer, texts, max_length, dev) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(dev)
    hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return mean_pool(hidden, batch["attention_mask"])


def fit_head(embeddings: torch.Tensor, targets: list[int], n_classes: int, c: float):
    """A logistic regression on the embeddings, as (weight [classes, hidden], bias [classes])."""
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=c, max_iter=2000).fit(as_numpy(embeddings), np.asarray(targets))
    weight = np.zeros((n_classes, embeddings.shape[1]))
    bias = np.zeros(n_classes)
    if len(head.classes_) == 2 and n_classes == 2:  # one row for two classes: logits [0, z]
        weight[1], bias[1] = head.coef_[0], head.intercept_[0]
    else:
        for row, label in enumerate(head.classes_):
            weight[label], bias[label] = head.coef_[row], head.intercept_[row]
        missing = set(range(n_classes)) - set(head.classes_.tolist())
        for label in missing:  # a class without examples is never predicted
            bias[label] = -1e4
    return torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)

"""Run every audit check over a config's data and gather the findings as plain data.

The findings dict is what report.json holds and what `--json` prints (its `suspect_labels`,
`duplicates` and `leaks` lists are a contract for scripts: ranked, each with file, 1-based data
row and score).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from paretune.audit import balance, duplicates, labels, outliers
from paretune.audit.embed import embed_texts, load_encoder
from paretune.audit.rows import AuditData, read_audit_data
from paretune.config.schema import Config
from paretune.errors import ParetuneError

log = logging.getLogger("paretune.audit")


class AuditOptions(BaseModel):
    mode: Literal["embeddings", "finetune", "both"] = Field(
        "embeddings", description="Where label probabilities come from: a logistic regression on frozen "
        "embeddings per fold (fast), short k-fold fine-tunes of the model (slow, closer to training), "
        "or the mean of the two (the two err on different rows, so their mean ranks flips best).")
    folds: int = Field(5, ge=2, description="Folds for the out-of-fold probabilities.")
    near_threshold: float = Field(0.95, gt=0, le=1, description="Cosine similarity from which two rows are near duplicates.")
    outlier_share: float = Field(0.01, ge=0, le=1, description="Share of training rows reported as outliers.")
    seed: int = Field(0, description="Seed of the folds.")


def audit(config: Config, options: AuditOptions) -> dict[str, Any]:
    started = time.perf_counter()
    data = read_audit_data(config)
    tokenizer, encoder = load_encoder(config.model)
    embeddings = {name: embed_texts(rows.texts, tokenizer, encoder, config.data.max_length, f"embed {name}")
                  for name, rows in data.splits.items()}
    findings: dict[str, Any] = {
        "files": {name: {"file": rows.file, "rows": len(rows.examples)} for name, rows in data.splits.items()},
        "labels": list(data.task.label_names or []),
        "options": options.model_dump(),
    }
    findings["suspect_labels"], findings["label_probabilities"] = _label_findings(config, data, embeddings, options)
    findings["duplicates"] = _pairs(data, embeddings, "train", "train", options.near_threshold)
    findings["leaks"] = [leak for other in ("validation", "test") if other in data.splits
                         for leak in _pairs(data, embeddings, "train", other, options.near_threshold)]
    findings["leaks"].sort(key=lambda p: -p["score"])
    findings["outliers"] = _outlier_findings(data, embeddings["train"], options.outlier_share)
    findings["lengths"] = _length_findings(data, tokenizer, config.data.max_length)
    findings["balance"] = _balance_findings(data)
    findings["seconds"] = round(time.perf_counter() - started, 2)
    return findings


def _label_findings(config: Config, data: AuditData, embeddings, options: AuditOptions):
    if not data.single_label:
        log.info("label audit skipped: it needs one class label per row (task %s)", data.task.name)
        return [], None
    targets = np.asarray(data.train.targets, dtype=np.int64)
    n_classes = len(data.task.label_names)
    _check_two_labels(data, targets)
    sources = []  # out-of-fold probabilities; `both` averages the two
    if options.mode in ("finetune", "both"):
        from paretune.audit.finetune_probs import finetune_probs

        sources.append(finetune_probs(config, data, options.folds, options.seed))
    if options.mode in ("embeddings", "both"):
        sources.append(labels.embedding_probs(embeddings["train"], targets, n_classes, options.folds, options.seed))
    probs = np.mean(sources, axis=0)
    names = data.task.label_names
    found = []
    for issue in labels.find_issues(targets, probs):
        if not issue.flagged:
            continue  # ranked list of what confident learning flags; the rest is in the probabilities
        found.append({**data.train.where(issue.index), "score": issue.score,
                      "label": names[issue.given], "suggested": names[issue.predicted],
                      "text": data.train.texts[issue.index]})
    accuracy = float((probs.argmax(1) == targets).mean())
    return found, {"out_of_fold_accuracy": round(accuracy, 4), "mode": options.mode,
                   **labels.reliability(accuracy, targets)}


def _check_two_labels(data: AuditData, targets: np.ndarray) -> None:
    """Confident learning compares labels with each other: one label leaves nothing to compare."""
    present = np.unique(targets)
    if len(present) < 2:
        only = data.task.label_names[int(present[0])] if len(present) else "none"
        raise ParetuneError(f"{data.train.file}: every training row has the label '{only}'; the label audit "
                            "needs at least two labels (is data.label_column the right column?)")


def _pairs(data: AuditData, embeddings, split: str, other: str, threshold: float) -> list[dict]:
    rows, other_rows = data.splits[split], data.splits[other]
    within = split == other
    pairs = duplicates.find_pairs(
        rows.texts, embeddings[split], threshold,
        None if within else other_rows.texts, None if within else embeddings[other])
    return [{**rows.where(p.index), "score": round(p.similarity, 6), "kind": "exact" if p.exact else "near",
             "same_as": other_rows.where(p.other),
             "same_label": rows.targets[p.index] == other_rows.targets[p.other],
             "text": rows.texts[p.index]} for p in pairs]


def _outlier_findings(data: AuditData, embeddings: np.ndarray, share: float) -> list[dict]:
    count = int(round(share * len(embeddings)))
    if count == 0 or len(embeddings) < 3:
        return []
    scores = outliers.outlier_scores(embeddings)
    top = np.argsort(-scores, kind="stable")[:count]
    return [{**data.train.where(int(i)), "score": round(float(scores[i]), 6), "text": data.train.texts[i]}
            for i in top]


def _length_findings(data: AuditData, tokenizer, max_length: int) -> list[dict]:
    found = []
    for rows in data.splits.values():
        counts = outliers.token_counts(rows.texts, tokenizer)
        found += [{**rows.where(i), "problem": problem, "tokens": tokens, "text": rows.texts[i][:200]}
                  for i, problem, tokens in outliers.length_problems(rows.texts, counts, max_length)]
    return found


def _balance_findings(data: AuditData) -> dict[str, Any] | None:
    if not data.single_label:
        return None
    names = list(data.task.label_names)
    counts = {name: balance.class_counts(rows.targets, len(names)) for name, rows in data.splits.items()}
    return {
        "train": balance.imbalance(counts["train"], names),
        "shift": {name: balance.shift(counts["train"], c, names) for name, c in counts.items() if name != "train"},
    }

"""What the few-shot and zero-shot recipes share: the body, embeddings, scoring and the run folder."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paretune.config.schema import Config
from paretune.cost.device import describe_device
from paretune.cost.prices import resolve_price
from paretune.data.prepare import CheckedData, check_data, encode_cached
from paretune.engine.evaluate import predict_outputs
from paretune.engine.rng import seed_everything
from paretune.errors import ConfigError
from paretune.models import count_parameters, load_model, load_tokenizer
from paretune.run_folder import RunFolder
from paretune.stored import save_model
from paretune.stored.embedding_head import NAME as FORM, EmbeddingClassifier, mean_pool

log = logging.getLogger("paretune")


def start(config: Config, method: str) -> tuple[Any, CheckedData]:
    """Seeded, with the tokenizer and the checked data of a whole-text classification run."""
    seed_everything(config.training.seed)
    tokenizer = load_tokenizer(config.model)
    checked = check_data(config)
    check_task(checked, method)
    return tokenizer, checked


def check_task(checked: CheckedData, method: str) -> None:
    task = checked.task
    if task.word_level or task.soft_targets != "softmax":
        raise ConfigError(f"method {method} classifies whole texts into one label: task {task.name} is not "
                          "supported (use classification)")


def load_body(config: Config, task) -> torch.nn.Module:
    """The pretrained body without any task head (the sentence-embedding model itself)."""
    return load_model(config.model, task).base_model


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def embed(body, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled, normalised embeddings of `texts` ([rows, hidden]), no gradients."""
    was_training = body.training
    body.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(next(body.parameters()).device)
            hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            out.append(mean_pool(hidden, batch["attention_mask"]).cpu())
    body.train(was_training)
    return torch.cat(out)


def score(model: EmbeddingClassifier, task, tokenizer, examples, targets, max_length: int) -> dict[str, Any]:
    encoded, _ = encode_cached(task, examples, targets, tokenizer, max_length, None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    outputs, loss = predict_outputs(model, task, encoded, 128, pad, next(model.parameters()).device)
    return {"loss": loss, **task.metrics(outputs, targets)}


def cost_of(config: Config, phases: dict[str, float], free: bool = False) -> dict[str, Any]:
    """cost.json: the recipe's wall time priced per device-hour (zero-shot trains nothing: $0)."""
    dev = describe_device(device())
    price = resolve_price(config.cost, dev)
    wall = sum(phases.values())
    hours = wall * dev.count / 3600
    usd = 0.0 if free else (hours * price.usd_per_hour if price else None)
    return {**dev.as_dict(), "precision": "fp32", "phases_s": {k: round(v, 3) for k, v in phases.items()},
            "wall_s": round(wall, 3), "device_hours": float(f"{hours:.4g}"),
            "price": price.as_dict() if price else None,
            "usd": None if usd is None else float(f"{usd:.4g}"),
            **({"note": "no training: the label descriptions are embedded once"} if free else {})}


def write_run(config: Config, checked: CheckedData, model: EmbeddingClassifier, tokenizer,
              phases: dict[str, float], train_rows: int, extra: dict[str, Any], free: bool = False) -> Path:
    """Score validation (and test), then write the whole run folder; returns its path."""
    started = time.perf_counter()
    task, max_length = checked.task, config.data.max_length
    metrics: dict[str, Any] = {"validation": score(model, task, tokenizer, checked.validation,
                                                   checked.validation_targets, max_length)}
    if checked.test:
        metrics["test"] = score(model, task, tokenizer, checked.test, checked.test_targets, max_length)
    phases["final_eval_s"] = time.perf_counter() - started
    params = count_parameters(model)
    run = RunFolder.create(config)
    run.write_json("data.json", {"train_rows": train_rows, "validation_rows": len(checked.validation),
                                 "test_rows": len(checked.test or []), "labels": task.label_names})
    info = {"task": config.task.model_dump(mode="json"), "labels": task.label_names,
            "max_length": max_length, "method": config.method.name}
    save_model(model, tokenizer, run.model_dir, info, FORM, {})
    metric = config.training.metric or task.default_metric
    run.write_json("cost.json", cost_of(config, phases, free))
    run.write_json("metrics.json", {**metrics, "metric": metric, "labels": task.label_names, **params, **extra})
    _card(run, config, metrics, metric)
    log.info("%s: validation %s %.4f -> %s", config.method.name, metric,
             metrics["validation"].get(metric, float("nan")), run.path)
    return run.path


def _card(run: RunFolder, config: Config, metrics: dict, metric: str) -> None:
    test = metrics.get("test", {}).get(metric)
    (run.path / "README.md").write_text("\n".join([
        f"# {run.path.name}: {config.method.name}", "",
        f"Validation {metric}: {metrics['validation'].get(metric)}" + (f"; test {metric}: {test}" if test else ""),
        "", "model/ holds a sentence-embedding body and a linear head (`head.safetensors`) on its mean-pooled,",
        "normalised embeddings: load it with `paretune eval`, `predict`, `serve` or `Predictor.load`.", ""]))


def as_numpy(rows: torch.Tensor) -> np.ndarray:
    return rows.numpy().astype(np.float64)

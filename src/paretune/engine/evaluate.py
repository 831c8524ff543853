"""Prediction and evaluation over encoded data, shared by the Trainer, the runner and the Predictor.

Batches are fixed-size and sorted by length (little padding, deterministic order); the task says
which batch tensors the model is called with (`task.model_inputs`), turns logits into per-example
outputs and computes the metrics. With several processes, `evaluate` splits the batches and
gathers the predictions, so every process sees the same metrics and takes the same decisions.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object

from paretune.config.schema import TrainingConfig
from paretune.data.batching import BatchPlan, make_loader
from paretune.data.encoded import Encoded, EvalSet
from paretune.engine.eval_generate import GENERATED_METRICS, metric_names
from paretune.errors import ConfigError
from paretune.tasks.base import Task


def model_inputs(task: Task, batch: dict[str, torch.Tensor], device,
                 dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The tensors of `batch` the task's model is called with, on `device`; float inputs (pixels)
    in `dtype` when given: a 16-bit model takes 16-bit pixels (token ids stay integers)."""
    inputs = {k: batch[k].to(device, non_blocking=True) for k in task.model_inputs}
    if dtype is not None:
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    return inputs


def weights_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype of the model's first float weight (None: no torch weights, e.g. ONNX Runtime)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


@torch.no_grad()
def _predict(model, task: Task, encoded: Encoded, batches: list[list[int]], pad_id: int, device,
             autocast=nullcontext, labels: bool = True, keep: int | None = None):
    """([(example index, output)], loss summed over rows, rows with a loss) of the first `keep`
    batches; batches after those are run and dropped (see `evaluate`)."""
    was_training = model.training
    if was_training:  # eval() walks every module: a serving-sized batch paid for it on each call
        model.eval()
    keep = len(batches) if keep is None else keep
    pairs: list[tuple[int, np.ndarray]] = []
    loss_sum, loss_count = 0.0, 0
    dtype = weights_dtype(model)  # a model stored in 16 bits takes 16-bit pixels
    task.before_predicting(model, device, autocast, refresh=labels)
    for b, batch in enumerate(make_loader(encoded, batches, pad_id, device.type == "cuda", task.collate,
                                                   workers=task.loader_workers)):
        inputs = model_inputs(task, batch, device, dtype)
        with autocast():
            logits = task.forward(model, inputs)
        if b >= keep:
            continue
        if labels and "labels" in batch:
            loss = task.loss(logits, batch["labels"].to(device))
            loss_sum += float(loss) * len(batch["index"])
            loss_count += len(batch["index"])
        pairs += zip(batch["index"].tolist(), task.outputs(logits, batch))
    if was_training:
        model.train()
    return pairs, loss_sum, loss_count


def eval_batches(encoded: Encoded, batch_size: int) -> list[list[int]]:
    return list(BatchPlan(encoded.lengths(), batch_size=batch_size, shuffle=False, sort_by_length=True))


def predict_outputs(model, task: Task, encoded: Encoded, batch_size: int, pad_id: int, device,
                    autocast=nullcontext, labels: bool = True) -> tuple[list[np.ndarray], float | None]:
    """Per-example task outputs in the original order (and mean loss when labels are present)."""
    pairs, loss_sum, loss_count = _predict(model, task, encoded, eval_batches(encoded, batch_size), pad_id,
                                           device, autocast, labels)
    outputs: list[np.ndarray | None] = [None] * len(encoded)
    for index, out in pairs:
        outputs[index] = out
    return outputs, (loss_sum / loss_count if loss_count else None)


def evaluate(model, task: Task, data: EvalSet, batch_size: int, pad_id: int, accelerator) -> dict[str, Any]:
    """Metrics of the whole set. With N processes each predicts every N-th batch and the
    predictions are gathered, so every process computes the same metrics."""
    acc, n = accelerator, accelerator.num_processes
    batches = eval_batches(data.encoded, batch_size)
    mine = batches[acc.process_index :: n]
    # A sharded model gathers its parameters in every forward, a collective: every process must
    # run as many batches, so the ones short of a batch repeat one and drop its outputs.
    rounds = math.ceil(len(batches) / n)
    pairs, loss_sum, loss_count = _predict(model, task, data.encoded, mine + batches[:1] * (rounds - len(mine)),
                                           pad_id, acc.device, acc.autocast, keep=len(mine))
    if n > 1:
        pairs = gather_object(pairs)
        totals = acc.reduce(torch.tensor([loss_sum, loss_count], dtype=torch.float64, device=acc.device), "sum")
        loss_sum, loss_count = float(totals[0]), int(totals[1])
    outputs = [out for _, out in sorted(pairs, key=lambda pair: pair[0])]
    metrics = task.metrics(outputs, data.targets)
    return {"loss": loss_sum / loss_count if loss_count else None, **metrics}


def check_metric(config: TrainingConfig, task: Task) -> None:
    """training.metric must be one the task reports: checked before anything is trained or written."""
    known = ("loss", *task.metric_names, *metric_names(config, task))
    if config.metric is not None and config.metric not in known:
        hint = ("; the metrics of generated answers need training.eval_generate: N (rows answered at each "
                "evaluation)" if task.generates and config.metric in GENERATED_METRICS else "")
        raise ConfigError(f"training.metric: '{config.metric}' is not a metric of the {task.name} task; "
                          f"choose one of {', '.join(known)}{hint}")

"""`paretune plan`'s measurement: a few real training steps per method on this machine, set up
exactly as `paretune train` sets up (same data preparation, model, method and Trainer, so the
batches and token budget are the ones training would use), then every device's estimate.

The steps run in a throw-away folder and are stopped by the on_step hook once timed; nothing
is saved. Model loading and method setup are timed too: they are part of a run's bill.
"""
from __future__ import annotations

import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from paretune.config import Config
from paretune.cost.context import ContextModel, count_context
from paretune.cost.device import Device, describe_device, reset_peak_host_memory
from paretune.cost.hardware import DEVICES, device_key
from paretune.cost.plan import Measured, StepTimer, current_rss_mib, estimate_here, estimate_scaled, workload
from paretune.cost.prices import default_price, load_table, resolve_price
from paretune.data.prepare import prepare_data
from paretune.engine.chunked_loss import ChunkedLoss
from paretune.engine.evaluate import _predict as predict_batches
from paretune.engine.evaluate import eval_batches
from paretune.engine.loop import Trainer
from paretune.engine.plan import planned_steps, train_plan
from paretune.engine.rng import seed_everything
from paretune.engine.strategy import build_accelerator
from paretune.errors import ConfigError
from paretune.methods import get_method
from paretune.methods.base import MethodContext
from paretune.models import load_model, load_tokenizer

log = logging.getLogger("paretune")

DEFAULT_DEVICES = ("cpu", "a10g", "a100", "h100", "h200")


class _Timed(Exception):
    """Raised from on_step once enough steps are timed: ends the calibration run."""


def plan_run(config: Config, methods: list[str], devices: list[str], steps: int = 10,
             context_memory_mib: float | None = None) -> list[dict]:
    """One row per (method, device): time, memory, dollars, whether it fits, measured or scaled, and
    the longest sequence that trains in the device's memory (or in `context_memory_mib`)."""
    unknown = [d for d in devices if d != "cpu" and d not in DEVICES]
    if unknown:
        raise ConfigError(f"unknown device(s) {', '.join(unknown)}: known are cpu, {', '.join(DEVICES)}")
    accelerator = build_accelerator(config)
    here = describe_device(accelerator.device, accelerator.num_processes)
    started = time.perf_counter()
    tokenizer = load_tokenizer(config.model)
    data = prepare_data(config, tokenizer)
    data_prep_s = time.perf_counter() - started
    setup_peak = read_peak_memory(accelerator.device)  # data preparation's, which a run pays too
    table = load_table(config.cost.prices_file)
    rows, baseline = [], None
    for name in methods:
        method_config = _method_options(config, name)
        work, measured = calibrate(config, method_config, data, tokenizer, accelerator, here, steps)
        measured.setup_s += data_prep_s
        # Memory freed after one method's steps stays with the allocator, so later methods would
        # start from a higher resident size than a fresh run does: all start from the first's.
        if baseline is None:
            baseline = measured.baseline_rss_mib
        elif measured.peak_memory_mib is not None and here.type == "cpu":
            measured.peak_memory_mib -= max(0.0, measured.baseline_rss_mib - baseline)
        measured.baseline_rss_mib = baseline
        if measured.peak_memory_mib is not None:
            measured.peak_memory_mib = max(measured.peak_memory_mib, setup_peak)
        for device in devices:
            rows.append(_device_row(device, work, measured, config, table, here, context_memory_mib))
    return rows


def _method_options(config: Config, name: str):
    """The configured method's options when it is the one asked for, else that method's defaults."""
    if config.method.name == name:
        return config.method
    return get_method(name).options(name=name)


def calibrate(config: Config, method_config, data, tokenizer, accelerator: Accelerator, here: Device,
              steps: int):
    """Time `steps` real optimizer steps of this method; returns (Workload, Measured)."""
    started = time.perf_counter()
    reset_peak_memory(accelerator.device)  # this method's peak: from its model loading on
    seed_everything(config.training.seed)
    model = load_model(config.model, data.task)
    method = get_method(method_config.name)
    plan = train_plan(data.train, config.training, accelerator, data.task)  # as the runner builds it
    _, total_steps = planned_steps(plan, config.training)
    model = method.apply(model, method_config, MethodContext(config.task.type, total_steps, config.data.max_length))
    baseline = current_rss_mib()
    timer = StepTimer(steps)

    def on_step(model, step):
        if method.on_step is not None:
            method.on_step(model, step)
        timer.on_step(model, step)
        if timer.done:
            raise _Timed()

    with tempfile.TemporaryDirectory(prefix="paretune-plan-") as folder:
        training = config.training.model_copy(update={"save_every": "epoch", "eval_every": "epoch"})
        trainer = Trainer(model=model, task=data.task, config=training, train=data.train, plan=plan, validation=None,
                          pad_id=_pad_id(tokenizer), run_dir=Path(folder), accelerator=accelerator,
                          on_step=on_step, extra_loss=method.extra_loss, lr_scale=method.lr_scale)
        setup_s = time.perf_counter() - started
        timer.trainer = trainer
        trainer.total_steps = config.training.max_steps or trainer.total_steps
        try:
            trainer.fit()
        except _Timed:
            pass
        peak, eval_spt = probe_peak_memory(trainer, data, _pad_id(tokenizer), accelerator)
        context = context_model(trainer, data, config)
    evals = [s.encoded.lengths() for s in (data.validation, data.test) if s is not None]
    work = workload(trainer, trainer.unwrapped, method_config.name, evals)
    spt = timer.seconds_per_token()
    if spt is None:
        raise ConfigError(f"{method_config.name}: the run has fewer than {2 + 1} steps, too few to time")
    log.info("plan: %s measured %.3g ms per 1k padded tokens over %d steps", method_config.name,
             spt * 1e6, len(timer.marks) - 1)
    del trainer, model
    accelerator.free_memory()
    return work, Measured(here, spt, baseline, setup_s, peak_memory_mib=peak, eval_seconds_per_token=eval_spt,
                          context=context)


def context_model(trainer: Trainer, data, config: Config) -> ContextModel | None:
    """What grows with the sequence length (cost/context.py), counted on the trained model; None
    for tasks whose inputs are not token ids (images)."""
    if "input_ids" not in trainer.task.model_inputs:
        return None
    model, device = trainer.unwrapped, trainer.acc.device
    vocab, share, chunked, forward = 0, 0.0, False, None
    if getattr(trainer.task, "token_cross_entropy", False):  # an LM head over the vocabulary
        head = ChunkedLoss(model, True)  # its hidden_states(): the count leaves the head to the formula
        vocab = head.vocab
        lengths = data.train.lengths()
        share = float(trainer.task.loss_units(data.train).sum() / max(lengths.sum(), 1))
        chunked = trainer.chunked_loss.mode if trainer.chunked_loss is not None else False
        forward = _without_head(model, head)
    return count_context(model, device, checkpointing=config.training.gradient_checkpointing, vocab=vocab,
                         labelled_share=share, chunked_loss=chunked, rows=config.training.batch_size or 1,
                         forward=forward)


def _without_head(model, head: ChunkedLoss):
    """The model's forward up to the hidden states its LM head reads."""
    def forward(input_ids):
        with head.hidden_states():
            return model(input_ids=input_ids)
    return forward


def reset_peak_memory(device) -> None:
    """Restart the peak counter, so a reading covers one method only."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_host_memory()


def read_peak_memory(device) -> float:
    """MiB: the accelerator's allocated peak, or the process's resident peak (what the meter reads)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 2**20)


def probe_peak_memory(trainer: Trainer, data, pad_id: int, accelerator: Accelerator) -> tuple[float, float | None]:
    """Peak memory at the run's heaviest shapes, measured rather than modelled: after the timed
    steps (the optimizer state now exists), one forward and backward of the planned training
    batch with the most padded tokens, then one forward of the largest evaluation batch. What the
    allocator holds, what autograd saves and the runtime's own buffers are all in the reading.
    A second forward of that evaluation batch is timed: seconds per padded evaluation token
    (None without a validation set). Evaluation runs large batches without gradients, so its
    speed is not a fixed share of a training step's, least of all for methods with many small
    adapter layers."""
    plan = trainer.plan
    largest = max(range(len(plan)), key=lambda i: plan.share(i).padded_tokens)
    batch = trainer.task.collate(data.train, plan.tail(largest)[0], pad_id)
    trainer.model.train()
    accelerator.backward(trainer._loss(batch))
    trainer.optimizer.zero_grad(set_to_none=True)
    eval_spt = None
    for split in (data.validation, data.test):  # the run evaluates both (the test set at the end)
        if split is None:
            continue
        eval_set = split.encoded
        batches = eval_batches(eval_set, trainer.config.eval_batch_size)
        heaviest = max(batches, key=lambda rows: len(rows) * int(eval_set.lengths()[rows].max()))
        predict = lambda: predict_batches(trainer.model, trainer.task, eval_set, [heaviest], pad_id,  # noqa: E731
                                          accelerator.device, accelerator.autocast)
        predict()
        if eval_spt is None:  # evaluation speed, timed on a second pass (the first warms the shapes)
            started = time.perf_counter()
            predict()
            synchronize(accelerator.device)
            eval_spt = (time.perf_counter() - started) / (len(heaviest) * int(eval_set.lengths()[heaviest].max()))
    return read_peak_memory(accelerator.device), eval_spt


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_row(device: str, work, measured: Measured, config: Config, table, here: Device,
                context_memory_mib: float | None = None) -> dict:
    if device == device_key(here):
        price = resolve_price(config.cost, here)
        return estimate_here(work, measured, price.usd_per_hour if price else None, context_memory_mib)
    if device == "cpu":  # a CPU's speed cannot be scaled from a GPU's
        return {"method": work.method, "device": "cpu", "basis": "unknown", "time_s": None,
                "peak_memory_mib": None, "usd": None, "fits": None}
    spec = DEVICES[device]
    price = default_price(table, Device("cuda", spec.cuda_name, 1, 1))
    # Host work (data, model loading) is taken as it was here; only training and evaluation scale.
    return estimate_scaled(work, spec, measured.setup_s, price.usd_per_hour if price else None, measured.context,
                           context_memory_mib)


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.eos_token_id

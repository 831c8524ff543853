"""`finetune(config)` and `resume(run_dir)`: the train command as a library call.

Setup only: read data, load model, apply the method, hand everything to the one Trainer, then
write the run folder. Resume runs exactly the same setup from the run folder's saved config.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from paretune.config import Config, config_from_dict, load_config
from paretune.data.prepare import PreparedData, prepare_data
from paretune.engine.loop import Trainer, evaluate, planned_steps, train_plan
from paretune.engine.precision import ACCELERATE_NAMES, resolve_precision
from paretune.engine.rng import seed_everything
from paretune.errors import ParetuneError
from paretune.methods import get_method
from paretune.methods.base import MethodContext
from paretune.model_card import write_model_card
from paretune.models import count_parameters, load_model, load_tokenizer, model_source
from paretune.resources import PeakMemory
from paretune.run_folder import RunFolder

log = logging.getLogger("paretune")


@dataclass
class Run:
    """A finished run: where it lives and what it measured."""

    path: Path
    metrics: dict[str, Any]
    config: Config
    cost: dict[str, Any] = field(default_factory=dict)

    @property
    def validation(self) -> dict[str, Any]:
        return self.metrics.get("validation", {})


def finetune(config: Config | dict | str | Path, overrides: list[str] | None = None) -> Run:
    """Train from a Config, a dict of sections, or a YAML path; returns the finished Run."""
    if isinstance(config, (str, Path)):
        name_hint = Path(config).stem
        config = load_config(config, overrides)
    else:
        name_hint = "run"
        if isinstance(config, dict):
            config = config_from_dict(config)
        if overrides:
            from paretune.config.loading import apply_overrides

            config = config_from_dict(apply_overrides(config.model_dump(mode="json"), overrides))
    return _train(config, name_hint=name_hint)


def resume(run_dir: str | Path) -> Run:
    """Continue a killed run from its newest checkpoint, with its saved config."""
    run = RunFolder.open(run_dir)
    if run.is_finished():
        raise ParetuneError(f"{run_dir} already finished (metrics.json exists); nothing to resume")
    return _train(run.read_config(), run=run)


def _train(config: Config, *, name_hint: str = "run", run: RunFolder | None = None) -> Run:
    timings: dict[str, float] = {}
    memory = PeakMemory()
    accelerator = _accelerator(config)
    seed_everything(config.training.seed)
    started = time.perf_counter()
    tokenizer = load_tokenizer(config.model)
    data = prepare_data(config, tokenizer)  # every data check happens here, before any training
    timings["data_prep_s"] = time.perf_counter() - started
    seed_everything(config.training.seed)  # model head init does not depend on data reading
    model = load_model(config.model, data.task)
    method = get_method(config.method.name)
    _, total_steps = planned_steps(train_plan(data.train, config.training, accelerator), config.training)
    model = method.apply(model, config.method, MethodContext(config.task.type, total_steps))
    params = count_parameters(model)

    # The run folder is made only once data, model and method are known good, so a setup
    # error leaves nothing behind that would block the corrected rerun.
    resuming = run is not None
    run = run or _create_run_folder(config, name_hint, accelerator)
    if accelerator.is_main_process:
        run.write_config(config)  # now with settled values (e.g. the NER tag scheme)
        run.write_json("data.json", data.stats)
    trainer = Trainer(
        model=model, task=data.task, config=config.training, train=data.train,
        validation=data.validation, pad_id=_pad_id(tokenizer), run_dir=run.path,
        accelerator=accelerator, on_eval=run.append_metrics, on_step=method.on_step,
    )
    if resuming:
        state = trainer.resume()
        run.truncate_metrics(state.step)
        log.info("resuming %s at step %d (epoch %d)", run.path, state.step, state.epoch)
    _announce(config, data, params, trainer, accelerator)
    state = trainer.fit()
    timings["train_s"] = state.train_seconds - state.extra.get("eval_seconds", 0.0)
    timings["periodic_eval_s"] = state.extra.get("eval_seconds", 0.0)

    started = time.perf_counter()
    final = {"validation": _evaluate(trainer, data.validation), "test": _evaluate(trainer, data.test)}
    timings["final_eval_s"] = time.perf_counter() - started
    metrics = {
        **{k: v for k, v in final.items() if v is not None},
        "metric": trainer.metric,
        "best_step": state.best_step,
        "steps": state.step,
        "epochs": round(state.step / max(trainer.steps_per_epoch, 1), 4),
        "stopped_early": state.stopped_early,
        "nan_steps": state.nan_steps,
        "lr": trainer.lr,
        "labels": data.task.label_names,
        **params,
    }
    cost = _cost(timings, state, trainer, accelerator, memory)
    if accelerator.is_main_process:
        _save_model(trainer, tokenizer, data, config, run)
        run.write_json("cost.json", cost)
        run.write_json("metrics.json", metrics)  # written last: its presence marks a finished run
        write_model_card(run, config, metrics, cost, model_source(config.model))
    return Run(path=run.path, metrics=metrics, config=config, cost=cost)


def _create_run_folder(config: Config, name_hint: str, accelerator: Accelerator) -> RunFolder:
    """Rank 0 creates the folder (and settles output.dir); the others wait and open it."""
    run = RunFolder.create(config, name_hint) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return run or RunFolder(Path(config.output.dir))


def _accelerator(config: Config) -> Accelerator:
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(config.training.precision, device_type)
    return Accelerator(mixed_precision=ACCELERATE_NAMES[precision], cpu=device_type == "cpu")


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:  # decoder-only models (GPT-2) have no pad token
        tokenizer.pad_token = tokenizer.eos_token
        return tokenizer.eos_token_id
    raise ParetuneError("the tokenizer has no pad token and no eos token to pad with")


def _evaluate(trainer: Trainer, eval_set) -> dict | None:
    if eval_set is None:
        return None
    cfg = trainer.config
    return evaluate(trainer.model, trainer.task, eval_set, cfg.eval_batch_size, trainer.pad_id, trainer.acc)


def _announce(config, data: PreparedData, params, trainer: Trainer, accelerator) -> None:
    if not accelerator.is_main_process:
        return
    plan = trainer.plan
    batching = (f"{plan.batch_tokens} tokens/batch ({len(data.train) / max(len(plan), 1):.0f} rows avg)"
                if plan.batch_tokens else f"batch {plan.batch_size}")
    log.info(
        "%s | %s | %d train / %d validation rows | %s trainable params of %s (%.2f%%) | "
        "%d steps, %s, lr %.2e, %s on %s",
        config.task.type, config.method.name, data.stats["train_rows"], data.stats["validation_rows"],
        f"{params['trainable_params']:,}", f"{params['total_params']:,}", params["trainable_percent"],
        trainer.total_steps, batching, trainer.lr, accelerator.mixed_precision, accelerator.device,
    )


def _save_model(trainer: Trainer, tokenizer, data: PreparedData, config: Config, run: RunFolder) -> None:
    from paretune.export import ADAPTER_DIR, save_trained_model

    task_info = {
        "task": config.task.model_dump(mode="json"),
        "labels": data.task.label_names,
        "max_length": config.data.max_length,
        "method": config.method.name,
    }
    # model/ (merged where possible, always Predictor-loadable) and adapter/ for adapter methods.
    save_trained_model(trainer.unwrapped, tokenizer, run.model_dir, run.path / ADAPTER_DIR, task_info)


def _cost(timings, state, trainer: Trainer, accelerator, memory: PeakMemory) -> dict[str, Any]:
    train_s = max(timings["train_s"], 1e-9)
    wall = sum(timings.values())
    return {
        "device": str(accelerator.device.type),
        "device_count": accelerator.num_processes,
        "precision": accelerator.mixed_precision,
        "phases_s": {k: round(v, 3) for k, v in timings.items()},
        "wall_s": round(wall, 3),
        "device_hours": round(wall * accelerator.num_processes / 3600, 6),
        "train_samples": state.samples_seen,
        "train_tokens": state.tokens_seen,
        "train_padded_tokens": state.padded_tokens_seen,
        "padding_fraction": round(1 - state.tokens_seen / max(state.padded_tokens_seen, 1), 4),
        "train_samples_per_s": round(state.samples_seen / train_s, 2),
        "train_tokens_per_s": round(state.tokens_seen / train_s, 1),
        **memory.read(),
    }

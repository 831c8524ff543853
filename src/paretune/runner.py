"""`finetune(config)` and `resume(run_dir)`: the train command as a library call.

Setup only: read data, load model, apply the method, hand everything to the one Trainer, then
write the run folder. Resume runs exactly the same setup from the run folder's saved config.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from paretune.config import Config, apply_overrides, config_from_dict, load_config, settle_output_dir
from paretune.cost.lineage import parent_run
from paretune.cost.meter import CostMeter
from paretune.data.prepare import PreparedData, prepare_data
from paretune.data.token_cache import default_cache_dir
from paretune.distributed.launch import launch_resume, launch_training, should_launch
from paretune.engine.sharding import sharding, whole_model
from paretune.engine.strategy import build_accelerator
from paretune.engine.faults import fault_point
from paretune.engine.eval_generate import generation_scorer
from paretune.engine.evaluate import check_metric, evaluate
from paretune.engine.loop import Trainer
from paretune.engine.plan import planned_steps, train_plan
from paretune.engine.precision import precision_name
from paretune.engine.rng import seed_everything
from paretune.engine.threads import use_available_cpus
from paretune.errors import ConfigError, ParetuneError
from paretune.evaluation.general_eval import read_general_set, start_general_eval
from paretune.methods import get_method
from paretune.methods.base import MethodContext
from paretune.models import count_parameters, load_model, load_tokenizer
from paretune.run_folder import RunFolder, check_writable
from paretune.run_results import run_cost, run_metrics, warn_if_no_better_than_baseline, write_results
from paretune.run_replace import discard_staging, staged_target, swap_in
from paretune.tasks.base import Task
from paretune.tracking import check_tracking
from paretune.tracking.session import RunHooks

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


@dataclass
class Seam:
    """How `paretune distill` and compression recovery reuse this setup and the one Trainer.

    They start from a model they built (a pruned copy, a student made of teacher layers) instead
    of loading `config.model`, may train it inside a wrapper with its own loss (the task the
    Trainer gets comes with it), and save the model `unwrap` returns.
    """

    model: Callable[[Task], torch.nn.Module]
    wrap: Callable[[torch.nn.Module, Task], tuple[torch.nn.Module, Any]] = lambda model, task: (model, task)
    unwrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model
    # Continual learning mixes replayed old rows into the run's data (continual/replay.py).
    data: Callable[[Config, Any], PreparedData] | None = None


def finetune(config: Config | dict | str | Path, overrides: list[str] | None = None, *,
             seam: Seam | None = None) -> Run:
    """Train from a Config, a dict of sections, or a YAML path; returns the finished Run.

    The one place a fresh run decides whether to start several processes (each comes back in
    here, already launched, and trains)."""
    config = settled_config(config, overrides)
    from paretune.recipes import RECIPES  # few-shot, zero-shot: runs made without the Trainer

    if config.method.name in RECIPES:
        if seam is not None or should_launch(config.distributed.nproc):
            raise ConfigError(f"method {config.method.name} runs in one process, without a seam")
        return _finished_run(RECIPES[config.method.name](config))
    if should_launch(config.distributed.nproc):
        if seam is not None:
            raise ConfigError("distributed.nproc > 1 is for `paretune train`; this command trains in one process")
        return _finished_run(launch_training(config))
    return _train(config, seam=seam)


def settled_config(config: Config | dict | str | Path, overrides: list[str] | None = None) -> Config:
    """The run's config, read and validated once, with output.dir settled before validation."""
    if isinstance(config, (str, Path)):
        return load_config(config, overrides)
    if isinstance(config, Config):
        if not overrides and config.output.dir:
            return config
        config = config.model_dump(mode="json")
    return config_from_dict(settle_output_dir(apply_overrides(config, overrides or []), "run"))


def resume(run_dir: str | Path, nproc: int | None = None) -> Run:
    """Continue a killed run from its newest checkpoint, with its saved config (and its number
    of processes unless `nproc` says otherwise)."""
    run = RunFolder.open(run_dir)
    config = run.read_config()
    target = staged_target(run.path, config)
    if run.is_finished():
        if target is not None:  # an overwriting run killed after finishing, before its swap
            swap_in(run.path, target, config)
            return _finished_run(target)
        raise ParetuneError(
            f"{run_dir} already finished (metrics.json exists); nothing to resume. Its checkpoints are "
            "removed after a run unless output.keep_checkpoints_after_run=true; to train it further, "
            f"start a new run from its model (--set model.name_or_path={Path(run_dir) / 'model'})"
        )
    check_writable(run.path)
    nproc = nproc or config.distributed.nproc
    if should_launch(nproc):
        launch_resume(run.path, nproc)
        return _finished_run(target or run.path)
    return _train(config, run=run)


def _finished_run(path: Path) -> Run:
    """A run another process trained, read back from its folder."""
    run = RunFolder.open(path)
    return Run(path=run.path, metrics=run.read_json("metrics.json"), config=run.read_config(),
               cost=run.read_json("cost.json"))


def _train(config: Config, *, run: RunFolder | None = None, seam: Seam | None = None) -> Run:
    config = _from_parent_model(config)
    timings: dict[str, float] = {}
    accelerator = build_accelerator(config)  # distributed: section (docs/distributed.md)
    use_available_cpus()  # torch's threads from the cores and CPU quota this process has (logged)
    meter = CostMeter(config.cost, accelerator)  # an unknown price fails here, before any work
    seed_everything(config.training.seed)
    started = time.perf_counter()
    tokenizer = load_tokenizer(config.model, task=config.task)
    # every data check happens here, before any training
    data = seam.data(config, tokenizer) if seam and seam.data else prepare_data(config, tokenizer)
    check_metric(config.training, data.task)  # else only the first evaluation would notice
    general_set = None if seam else read_general_set(config.data.general_eval, data.task)  # forgetting check
    timings["data_prep_s"] = time.perf_counter() - started
    seed_everything(config.training.seed)  # model head init does not depend on data reading
    model = seam.model(data.task) if seam else load_model(config.model, data.task)
    method = get_method(config.method.name)
    _check_sharding(config, method, seam, accelerator)
    plan = train_plan(data.train, config.training, accelerator, data.task)  # the one the Trainer takes
    _, total_steps = planned_steps(plan, config.training)
    context = MethodContext(config.task.type, total_steps, config.data.max_length)
    model = method.apply(model, config.method, context)
    params = count_parameters(model)
    train_model, train_task = seam.wrap(model, data.task) if seam else (model, data.task)

    # The run folder is made only once data, model and method are known good, so a setup
    # error leaves nothing behind that would block the corrected rerun.
    resuming = run is not None
    if run is None:
        check_tracking(config.tracking, Path(config.output.dir))  # a bad tracking.dir: before the folder exists
        run, config = _create_run_folder(config, accelerator)
    target = staged_target(run.path, config)  # the run this one replaces when it finishes
    try:
        finished = _fit_and_save(config, data, tokenizer, run, resuming, accelerator, meter, method,
                                 context, params, timings, seam, (train_model, train_task, plan), general_set)
    except BaseException as err:
        if target is not None and accelerator.is_main_process and not resuming:
            discard_staging(run.path, target, failed=isinstance(err, Exception))
        raise
    if target is not None and accelerator.is_main_process:
        swap_in(run.path, target, config)
    return finished if target is None else Run(target, finished.metrics, config, finished.cost)


def _fit_and_save(config: Config, data: PreparedData, tokenizer, run: RunFolder, resuming: bool,
                  accelerator: Accelerator, meter: CostMeter, method, context: MethodContext,
                  params: dict, timings: dict[str, float], seam: Seam | None, training: tuple,
                  general_set: tuple | None = None) -> Run:
    train_model, train_task, plan = training
    if accelerator.is_main_process:
        run.write_config(config)  # now with settled values (e.g. the NER tag scheme)
        run.write_json("data.json", data.stats)
    hooks = RunHooks(config, run.path, meter, method, main_process=accelerator.is_main_process,
                     append_metrics=run.append_metrics)  # the run's plan and its tracking
    trainer = Trainer(
        model=train_model, task=train_task, config=config.training, train=data.train, plan=plan,
        validation=data.validation, pad_id=_pad_id(tokenizer), run_dir=run.path,
        accelerator=accelerator, on_eval=hooks.on_eval, on_step=hooks.on_step,
        extra_loss=method.extra_loss, lr_scale=method.lr_scale,
        score_answers=None if seam else generation_scorer(config.training, data.task, data.validation_examples,
                                                          tokenizer, accelerator.device),
    )
    hooks.start(trainer, data)
    _score_reference(config, train_task, trainer, data, run, accelerator, timings)
    started = time.perf_counter()  # the forgetting check's base score (evaluation/general_eval.py)
    general = start_general_eval(general_set, data.task, trainer.unwrapped, tokenizer, accelerator.device, run.path,
                                 accelerator.is_main_process)
    if general is not None:
        timings["general_eval_s"] = time.perf_counter() - started
    if resuming:
        _resume_trainer(trainer, run)
    _announce(config, data, params, trainer, accelerator)
    try:
        state = trainer.fit()
    except BaseException:
        hooks.close(failed=True)
        raise
    timings["train_s"] = state.train_seconds - state.eval_seconds
    if trainer.compiled is not None:  # training.compile: the final passes and decoding run the plain module
        trainer.compiled.release()
    timings["periodic_eval_s"] = state.eval_seconds

    started = time.perf_counter()
    final = _final_evaluation(trainer, data, tokenizer, accelerator, run)
    timings["final_eval_s"] = time.perf_counter() - started
    if general is not None:  # forgetting: the tuned model on the general set the base answered
        started = time.perf_counter()
        final["forgetting"] = general.compare(data.task, trainer.unwrapped, tokenizer, accelerator.device)
        timings["general_eval_s"] += time.perf_counter() - started
    if final["validation"] is not None and accelerator.is_main_process:  # a run that ended at chance
        warn_if_no_better_than_baseline(final["validation"], data.task.label_names, trainer.lr)
    metrics = run_metrics(final, trainer, state, data, params)
    cost = run_cost(config, meter, timings, state, trainer, accelerator, hooks)
    if trainer.sharding == "none":
        trained = seam.unwrap(trainer.unwrapped) if seam else trainer.unwrapped
    else:  # gathered from the shards (every process takes part) into a fresh copy
        trained = whole_model(accelerator, trainer.model,
                              lambda: method.apply(load_model(config.model, data.task), config.method, context))
    if accelerator.is_main_process:
        _save_model(trained, tokenizer, data, config, run)
        fault_point("final-model")
        write_results(run, config, metrics, cost)
        hooks.finish(run.path, metrics, cost)
    return Run(path=run.path, metrics=metrics, config=config, cost=cost)


def _final_evaluation(trainer: Trainer, data: PreparedData, tokenizer, accelerator: Accelerator,
                      run: RunFolder) -> dict:
    """The final weights' validation and test metrics (None where there is no such set); a
    generative task's first answers go to samples.jsonl (the run page shows them)."""
    # The last periodic evaluation often scored these very weights (one epoch ends on it): a
    # second pass over the validation set would cost its time again for the same figures.
    reused = trainer.scored_final_weights()
    validation = dict(reused) if reused is not None else _evaluate(trainer, data.validation)
    final = {"validation": validation, "test": _evaluate(trainer, data.test)}
    if final["validation"] is not None and data.validation_examples:  # generated text, for generative tasks
        with_samples = getattr(data.task, "model_metrics_and_samples", None)
        args = (trainer.unwrapped, tokenizer, data.validation_examples, accelerator.device)
        scores, samples = with_samples(*args) if with_samples else (data.task.model_metrics(*args), [])
        final["validation"].update(scores)
        if samples and accelerator.is_main_process:  # written before metrics.json marks the run finished
            run.write_jsonl("samples.jsonl", samples)
    return final


def _from_parent_model(config: Config) -> Config:
    """A model named by a finished run's folder loads from its saved (merged) model/ folder."""
    parent = parent_run(config.model.name_or_path)
    if parent is None or config.model.name_or_path == str(parent / "model"):
        return config
    model = config.model.model_copy(update={"name_or_path": str(parent / "model")})
    return config.model_copy(update={"model": model})


def _score_reference(config: Config, task: Task, trainer: Trainer, data: PreparedData, run: RunFolder,
                     accelerator, timings: dict[str, float]) -> None:
    """A task that scores its data with the model as it starts (preference tuning's reference
    log-probs) does it here: after the method is applied, before any step or a checkpoint's weights.
    It keeps the scores in the run folder (a resumed run reads them back) and beside the
    tokenization cache (a repeated run on the same data and model reads them back). Its time is
    the run's `reference_s` (about 0 when read back)."""
    score = getattr(task, "score_reference", None)
    if score is None:
        return
    started = time.perf_counter()
    held_out = {"validation": data.validation, "test": data.test}
    sets = {"train": data.train, **{name: s.encoded for name, s in held_out.items() if s is not None}}
    shared = Path(config.data.cache_dir) if config.data.cache_dir else default_cache_dir()
    score(trainer.unwrapped, sets, accelerator.device, run.path, accelerator.autocast, shared / "reference")
    timings["reference_s"] = time.perf_counter() - started


def _resume_trainer(trainer: Trainer, run: RunFolder) -> None:
    if trainer.has_checkpoint():
        state = trainer.resume()
        run.truncate_metrics(state.step)
        log.info("resuming %s at step %d (epoch %d)", run.path, state.step, state.epoch)
        return
    # Killed before its first checkpoint: the folder holds only what setup wrote (and evaluations,
    # which are redone), so training from step 0 in it loses nothing.
    run.truncate_metrics(0)
    log.warning("%s was stopped before its first checkpoint (training.save_every=%s): training it again "
                "from the start", run.path, trainer.config.save_every)


def _create_run_folder(config: Config, accelerator: Accelerator) -> tuple[RunFolder, Config]:
    """The main process creates the folder and tells the others its path (a staging folder when
    it replaces a run) and output.dir, or its error: under torchrun each process named the run
    with its own timestamp, so they take the main process's config (a copy; none is changed).
    A process that stopped here would leave the others waiting forever."""
    outcome: list = [None]
    if accelerator.is_main_process:
        try:
            outcome = [(str(RunFolder.create(config).path), config.output.dir)]
        except Exception as err:
            if accelerator.num_processes > 1:
                broadcast_object_list([("error", f"the main process could not create the run folder: {err}")])
            raise
    if accelerator.num_processes > 1:
        outcome = broadcast_object_list(outcome)
    if outcome[0][0] == "error":
        raise ParetuneError(outcome[0][1])
    path, output_dir = outcome[0]
    if output_dir != config.output.dir:
        config = config.model_copy(update={"output": config.output.model_copy(update={"dir": output_dir})})
    return RunFolder(Path(path)), config


def _check_sharding(config: Config, method, seam: Seam | None, accelerator: Accelerator) -> None:
    if sharding(accelerator) == "none":
        return
    if method.on_step is not None:
        raise ConfigError(f"method {config.method.name} changes weights between steps, which needs whole "
                          "parameters on every process: use distributed.strategy: ddp")
    if seam is not None:
        raise ConfigError("this command trains replicated models only: use distributed.strategy: ddp")


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
        trainer.total_steps, batching, trainer.lr, precision_name(accelerator.mixed_precision), accelerator.device,
    )


def _save_model(model: torch.nn.Module, tokenizer, data: PreparedData, config: Config, run: RunFolder) -> None:
    from paretune.stored.trained import ADAPTER_DIR, save_trained_model

    task_info = {
        "task": config.task.model_dump(mode="json"),
        "labels": data.task.label_names,
        "max_length": config.data.max_length,
        "method": config.method.name,
    }
    # model/ (merged where possible, always Predictor-loadable) and adapter/ for adapter methods.
    save_trained_model(model, tokenizer, run.model_dir, run.path / ADAPTER_DIR, task_info)

"""What a finished training run writes: metrics.json, cost.json (with the plan, threads, compile
graphs and lineage), the confusion pictures and the model card, in the order that marks a run
finished only once everything is in place."""
from __future__ import annotations

import logging

from accelerate import Accelerator

from paretune.config import Config
from paretune.cost.lineage import parent_run, with_lineage
from paretune.cost.meter import CostMeter
from paretune.data.prepare import PreparedData
from paretune.engine.faults import fault_point
from paretune.engine.loop import Trainer
from paretune.engine.threads import threads_in_use
from paretune.evaluation.confusion_plot import draw_run_confusions
from paretune.model_card import write_model_card
from paretune.models import model_source
from paretune.run_folder import RunFolder
from paretune.tasks import task_class
from paretune.tracking.session import RunHooks

log = logging.getLogger("paretune")


def run_metrics(final: dict, trainer: Trainer, state, data: PreparedData, params: dict) -> dict:
    """metrics.json: the final scores, the run's shape and the method's parameter counts."""
    return {
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


def run_cost(config: Config, meter: CostMeter, timings: dict[str, float], state, trainer: Trainer,
              accelerator: Accelerator, hooks: RunHooks) -> dict:
    """cost.json: the meter's reading, the plan, the threads, compile graphs, and the lineage's cost."""
    cost = meter.finish(timings, state, trainer.unwrapped, accelerator)
    cost["plan"] = hooks.plan()
    cost["cpu_threads"] = threads_in_use().as_dict()  # what the run computed with, and why
    if trainer.compiled is not None:  # training.compile: how many graphs it took (engine/compile.py)
        log.info(trainer.compiled.describe())
        cost["compile"] = trainer.compiled.summary()
    parent = parent_run(config.model.name_or_path)
    if parent is not None:  # started from another run's model: what the lineage cost in all
        cost = with_lineage(cost, parent)
    return cost


def write_results(run: RunFolder, config: Config, metrics: dict, cost: dict) -> None:
    """Results, metrics.json last (its presence marks a finished run), then the folder slimmed
    and its final size recorded."""
    run.write_json("cost.json", cost)
    if task_class(config.task.type).confusion_picture:  # before metrics.json marks the run finished
        draw_run_confusions(metrics, metrics.get("labels") or [], run.path)
    run.write_json("metrics.json", metrics)
    fault_point("finished")
    if not config.output.keep_checkpoints_after_run:
        run.remove_checkpoints()
    metrics["run_folder_bytes"] = cost["run_folder_bytes"] = run.size_bytes()
    run.write_json("cost.json", cost)
    run.write_json("metrics.json", metrics)
    write_model_card(run, config, metrics, cost, model_source(config.model, config.task))


def warn_if_no_better_than_baseline(validation: dict, labels: list[str], lr: float) -> None:
    from paretune.evaluation.baseline import no_better_than_baseline

    warning = no_better_than_baseline(validation, labels, lr)
    if warning:
        log.warning(warning)

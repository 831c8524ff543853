"""`continue_from(RUN, config)`: train a finished run further on new data, through the one Trainer.

The new run starts from RUN's model and head (its labels first, in their order; new ones appended
only with continual.allow_new_labels), mixes in replayed rows and adds the L2-SP/EWC pulls as the
`continual:` section says, and writes lineage.json: what it continued from, the whole chain, and
the old task's validation score before and after (the forgetting), which the model card shows.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from paretune.config import Config, config_from_dict
from paretune.continual.penalty import Pull, PulledTask, anchor, fisher_diagonal
from paretune.continual.previous import LINEAGE_FILE, PreviousRun
from paretune.continual.replay import encode_rows, old_training_rows, prepare_with_replay
from paretune.data.prepare import check_data, read_split
from paretune.engine.evaluate import predict_outputs
from paretune.errors import ParetuneError
from paretune.model_card import refresh_model_card
from paretune.models import load_tokenizer
from paretune.run_folder import RunFolder
from paretune.runner import Run, Seam, finetune, settled_config
from paretune.tasks import task_class

log = logging.getLogger("paretune")


def continue_from(from_run: str | Path, config: Config | dict | str | Path, overrides: list[str] | None = None,
                  trust_remote_code: bool = False) -> Run:
    previous = PreviousRun.open(from_run, trust_remote_code)
    config = continued_config(previous, settled_config(config, overrides))
    options = config.continual
    tokenizer = load_tokenizer(config.model)
    fisher_rows = old_training_rows(previous.config, count=options.fisher_rows, seed=options.seed) if options.ewc else []

    def wrap(model, task):
        old = anchor(model)
        pulls = [Pull(model, old, options.l2sp)] if options.l2sp else []
        if options.ewc:
            encoded = encode_rows(task, fisher_rows, config, previous.config.data.train, tokenizer)
            pulls.append(Pull(model, old, options.ewc, fisher_diagonal(model, task, encoded, _pad(tokenizer))))
        return (model, PulledTask(task, model, pulls)) if pulls else (model, task)

    def data(cfg, tok):
        return prepare_with_replay(cfg, tok, previous.config, options.replay, options.seed)

    run = finetune(config, seam=Seam(model=previous.load_model, wrap=wrap, data=data))
    write_lineage(run, previous, config)
    return run


def continued_config(previous: PreviousRun, config: Config) -> Config:
    """The user's config, with the old run's model and its labels first (checked against the data)."""
    old_task = previous.config.task
    if config.task.type != old_task.type:
        raise ParetuneError(f"--from {previous.path}: it trained task {old_task.type}, the config asks for "
                            f"{config.task.type}; a continued run keeps its task")
    task_cls = task_class(config.task.type)
    unlabelled = config.task.model_copy(update={"labels": None})
    seen = task_cls.infer_labels(read_split(config, "train", config.data.train), unlabelled)
    added = [label for label in seen if label not in previous.labels]
    if added and not config.continual.allow_new_labels:
        raise ParetuneError(f"{config.data.train} holds labels {added} that {previous.path} never saw (it knows "
                            f"{previous.labels}); set continual.allow_new_labels=true to add them to the head")
    raw = config.model_dump(mode="json")
    raw["task"] = {**old_task.model_dump(mode="json"), "labels": previous.labels + added}
    raw["model"] = {**raw["model"], "name_or_path": str(previous.run.model_dir)}
    return config_from_dict(raw)


def old_task_score(run: Run, previous: PreviousRun) -> dict[str, Any] | None:
    """The continued model's metrics on the old run's validation rows (as the old run split them)."""
    from paretune.predictor import Predictor

    checked = check_data(previous.config)
    predictor = Predictor.load(run.path, trust_remote_code=previous.trust_remote_code)
    task = predictor.task
    encoded = encode_rows(task, checked.validation, run.config, "old validation", predictor.tokenizer)
    targets = task.parse(checked.validation, "old validation", previous.config.data.label_column)
    outputs, _ = predict_outputs(predictor.model, task, encoded, run.config.training.eval_batch_size,
                                 _pad(predictor.tokenizer), predictor.device)
    return task.metrics(outputs, targets)


def write_lineage(run: Run, previous: PreviousRun, config: Config) -> None:
    folder = RunFolder(run.path)
    lineage = {
        "continued_from": str(previous.path),
        "chain": previous.lineage(),
        "strategy": {"method": config.method.name, **config.continual.model_dump()},
        "labels_added": config.task.labels[len(previous.labels):],
        "replayed_rows": folder.read_json("data.json").get("replayed_rows", 0),
        "old_task": {"data": previous.config.data.validation or f"{previous.config.data.train} (held out)",
                     "before": previous.run.read_json("metrics.json").get("validation"),
                     "after": old_task_score(run, previous)},
        "new_task": run.metrics.get("validation"),
    }
    folder.write_json(LINEAGE_FILE, lineage)
    refresh_model_card(folder)


def _pad(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

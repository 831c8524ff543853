"""`compress_run`: one compression method applied to a finished run, written as a new run."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from paretune.compression import get_method
from paretune.compression.base import CompressContext, CompressionMethod
from paretune.compression.parent import Parent
from paretune.compression.run_writer import (
    BenchSettings,
    add_phases,
    child_config,
    create_run,
    finish,
    lineage_cost,
    own_cost,
    save_model,
    untrained_metrics,
)
from paretune.compression.staging import discard, prepare_staging, with_output_dir
from paretune.errors import ParetuneError
from paretune.models import count_parameters
from paretune.run_folder import RunFolder
from paretune.stored import get_form
from paretune.tasks import task_class
from paretune.validation import dotted_key, validation_problems

log = logging.getLogger("paretune")


def compress_run(run_dir: str | Path, method: str, options: dict[str, Any] | None = None, *,
                 output: str | Path | None = None, recover_epochs: float = 0,
                 overrides: list[str] | None = None, bench: BenchSettings | None = None,
                 overwrite: bool = False, trust_remote_code: bool = False) -> Path:
    """Compress the model of finished run `run_dir` with `method`; returns the new run folder.

    The run is written in a staging folder and swapped in only once finished (staging.py).
    `trust_remote_code` as in `Predictor.load`: only the caller can allow code shipped in `run_dir`.
    """
    chosen = get_method(method)
    settings = _settings(chosen, options)
    if recover_epochs and not chosen.recoverable:
        raise ParetuneError(f"--recover-epochs applies to pruning and drop-layers, not to {method}")
    parent = Parent.open(run_dir, trust_remote_code)
    check_applies(chosen, parent)
    config = child_config(parent, Path(output) if output else None, method, overwrite)
    target = Path(config.output.dir)
    staging = prepare_staging(config, parent.path, method)  # every refusal comes before any work
    try:
        run = _compress_into(staging, parent, chosen, settings, config, recover_epochs, overrides,
                             bench or BenchSettings())
    except BaseException:
        discard(staging, target)
        raise
    log.info("wrote %s", run.path)
    return run.path


def _compress_into(staging: Path, parent: Parent, chosen: CompressionMethod, settings, config,
                   recover_epochs: float, overrides: list[str] | None, bench: BenchSettings) -> RunFolder:
    phases: dict[str, float] = {}
    started = time.perf_counter()
    model, data = parent.load_model(), parent.data
    phases["load_s"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="paretune-compress-") as workdir:
        context = CompressContext(task=data.task, tokenizer=parent.tokenizer, pad_id=parent.pad_id,
                                  max_length=parent.info["max_length"], train=data.train,
                                  validation=data.validation, workdir=Path(workdir))
        started = time.perf_counter()
        log.info("compressing %s with %s", parent.path, chosen.name)
        compressed = chosen.apply(model, settings, context)
        phases["compress_s"] = time.perf_counter() - started
        entry = {"parent": str(parent.path), "method": chosen.name, "settings": compressed.settings,
                 "checks": compressed.checks, "form": {"name": compressed.form, **compressed.form_settings}}
        if recover_epochs:
            from paretune.compression.recovery import recover

            trained = recover(parent, compressed, with_output_dir(config, staging), recover_epochs, overrides)
            run, metrics = RunFolder(trained.path), trained.metrics
            run.write_config(with_output_dir(run.read_config(), Path(config.output.dir)))  # what it becomes
            step = add_phases(trained.cost, phases)  # loading and compressing came before training
            entry["recover_epochs"] = recover_epochs
        else:
            started = time.perf_counter()
            run = create_run(with_output_dir(config, staging), parent)
            run.write_config(config)  # names the folder it becomes once swapped in
            save_model(run, compressed, parent)
            phases["save_s"] = time.perf_counter() - started
            # int8 packs its weights out of sight of .parameters(), ONNX has no module: same count as before
            counted = get_form(compressed.form).counts_parameters
            params = count_parameters(compressed.model)["total_params"] if counted else \
                parent.read_json("metrics.json").get("total_params", 0)
            metrics, step = untrained_metrics(parent, params), own_cost(phases, parent)
    finish(run, parent, entry, metrics, lineage_cost(step, parent), bench)  # swaps the staging folder in
    return run


def _settings(chosen: CompressionMethod, options: dict[str, Any] | None):
    try:
        return chosen.options(**(options or {}))
    except ValidationError as err:
        missing = [str(p["loc"][0]) for p in err.errors() if p["type"] == "missing" and p["loc"]]
        if missing:  # pydantic's "Field required" names neither the flag nor what it wants
            flags = " and ".join("--" + name.replace("_", "-") for name in missing)
            wants = "; ".join(f"--{n.replace('_', '-')}: {chosen.options.model_fields[n].description}" for n in missing)
            raise ParetuneError(f"compress --method {chosen.name} requires {flags} ({wants}). "
                                f"{chosen.name}: {chosen.description}") from None
        problems = validation_problems(err, key=lambda loc: dotted_key(loc, empty=chosen.name))
        raise ParetuneError(f"compress --method {chosen.name}: "
                            + "; ".join(f"{key}: {message}" for key, message in problems)) from None


def check_applies(chosen: CompressionMethod, parent: Parent) -> None:
    """Refuse, before loading anything, a method whose result could not serve this run's task."""
    task = task_class(parent.config.task.type)
    if task.generates and not chosen.generative:
        from paretune.compression import METHODS

        usable = ", ".join(name for name, m in METHODS.items() if m.generative)
        raise ParetuneError(f"compress --method {chosen.name} does not apply to {parent.path}, a "
                            f"{task.name} run: its result could not generate answers (ONNX forms export one "
                            "forward pass to logits, with no decoding loop; prune-heads cuts BERT-style "
                            f"attention only). Methods for this run: {usable}")

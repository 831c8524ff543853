"""`output.overwrite: true` without risk: what may be replaced, and replacing it only on success.

Only a folder that is recognisably a paretune run (config.yaml and environment.json, nothing but
the files paretune writes) is ever replaced; never the working directory, a folder above it, or
one holding the run's data, model or price table. A run that has something to lose (finished
results or checkpoints) is not touched until the new run has finished: the new one trains in a
sibling staging folder, `<name>.staging`, which is swapped in at the end. A run killed on the way
leaves that folder behind, which `paretune train --resume <name>.staging` continues (and swaps in).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from paretune.config.schema import Config
from paretune.engine.faults import fault_point
from paretune.errors import ParetuneError

log = logging.getLogger("paretune")

STAGING_SUFFIX = ".staging"
REPLACED_SUFFIX = ".replaced"
RUN_MARKERS = ("config.yaml", "environment.json")  # RunFolder.create writes both first
# Everything paretune itself writes at the top of a run folder.
RUN_ENTRIES = {*RUN_MARKERS, "data.json", "metrics.jsonl", "metrics.json", "cost.json", "README.md",
               "inference.json", "model", "adapter", "checkpoints",
               "lineage.json",  # a run continued from another (continual/)
               "reference_logps.safetensors",  # a preference run's reference log-probs (tasks/preference.py)
               "samples.jsonl",  # a generative run's first validation answers (runner.py)
               "confusion_matrix.png", "confusion_matrix_test.png"}  # classification pictures (evaluation/confusion_plot.py)
_OUR_TEMP_FILE = re.compile(r"^\..+\.tmp\d+$")  # run_folder.atomic_write's, left by a kill


def staging_path(target: Path) -> Path:
    return target.with_name(target.name + STAGING_SUFFIX)


def staged_target(path: Path, config: Config) -> Path | None:
    """The run folder that staging folder `path` will replace, or None when `path` is no staging folder."""
    if not config.output.dir or not path.name.endswith(STAGING_SUFFIX):
        return None
    target = Path(config.output.dir)
    return target if staging_path(target).resolve() == path.resolve() else None


def has_results(path: Path) -> bool:
    """A run with something to lose: finished results, or checkpoints to resume from."""
    checkpoints = path / "checkpoints"
    return (path / "metrics.json").is_file() or (checkpoints.is_dir() and any(checkpoints.iterdir()))


def check_replaceable(path: Path, config: Config) -> None:
    """Refuse, naming the folder and why, to replace anything but a paretune run folder."""
    resolved = path.resolve()
    why = _protected(resolved, config)
    if why is None and not all((path / name).is_file() for name in RUN_MARKERS):
        why = "it is not a paretune run folder (no config.yaml and environment.json)"
    if why is None:
        strangers = sorted(p.name for p in path.iterdir()
                           if p.name not in RUN_ENTRIES and not _OUR_TEMP_FILE.match(p.name))
        if strangers:
            why = f"it holds files paretune did not write ({', '.join(strangers[:5])}); move them out first"
    if why is not None:
        raise ParetuneError(f"output.overwrite=true would delete {path}, and it is not replaced: {why}. "
                            "Choose another output.dir.")


def _protected(resolved: Path, config: Config) -> str | None:
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        return "it is the working directory or holds it"
    inputs = [("data file", config.data.train), ("data file", config.data.validation),
              ("data file", config.data.test), ("model", config.model.name_or_path),
              ("price table", config.cost.prices_file), ("tokenization cache", config.data.cache_dir)]
    for what, value in inputs:
        if not value or not Path(value).exists():  # hub ids and unset paths hold nothing here
            continue
        held = Path(value).resolve()
        if held == resolved or resolved in held.parents:
            return f"it holds this run's {what} {value}"
    return None


def prepare_target(path: Path, config: Config) -> Path:
    """Where the new run is written: `path` itself, or its staging folder when `path` holds a run
    that must survive until the new one finishes. Checks and clears only what is safe to clear."""
    if path.exists() and not path.is_dir():
        raise ParetuneError(f"output.dir {path} is a file, not a folder: choose another output.dir")
    if not (path.exists() and any(path.iterdir())):
        return path
    if not config.output.overwrite:
        raise ParetuneError(
            f"run folder {path} already exists and is not empty: continue it with "
            f"`paretune train --resume {path}`, choose another output.dir, "
            "or set output.overwrite=true to replace it"
        )
    check_replaceable(path, config)
    if not has_results(path):  # stopped before its first checkpoint: nothing to keep
        shutil.rmtree(path)
        return path
    staging = staging_path(path)
    if staging.exists():  # an earlier overwrite of the same folder, killed before it finished
        check_replaceable(staging, config)
        log.warning("removing %s, left by an earlier overwrite of %s that did not finish", staging, path)
        shutil.rmtree(staging)
    log.info("writing the new run in %s; it replaces %s only once it has finished", staging, path)
    return staging


def swap_in(staging: Path, target: Path, config: Config) -> None:
    """Replace `target` by the finished run in `staging`: two renames, the old run deleted last.

    A kill between the renames leaves `<name>.replaced` (the old run) and `<name>.staging` (the new,
    finished one); `paretune train --resume <name>.staging` completes the swap.
    """
    old = target.with_name(target.name + REPLACED_SUFFIX)
    if target.exists():
        check_replaceable(target, config)  # it may have changed while this run trained
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    fault_point("swap")
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def discard_staging(staging: Path, target: Path, failed: bool) -> None:
    """After a failed run: the old run is intact; remove the half-made new one (a failure) or say
    where it is (an interrupt, which may be resumed)."""
    if failed:
        shutil.rmtree(staging, ignore_errors=True)
        log.error("the run failed; %s is unchanged (the new run's folder %s was removed)", target, staging)
    else:
        log.error("interrupted; %s is unchanged. Continue the new run with `paretune train --resume %s` "
                  "(it replaces %s when it finishes) or delete %s", target, staging, target, staging)

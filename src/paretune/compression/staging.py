"""Where `paretune compress` writes: always a staging folder beside the output, swapped in at the end.

A compressed run is made in `<output>.staging` and renamed to `<output>` only once its
metrics.json is written (run_replace.swap_in, the swap training uses), so a compress that is
killed or fails leaves no folder at `<output>` that `predict` or `serve` would load as a finished
run. A staging folder left by a killed compress is removed by the next compress to that output;
one left by `paretune train`'s own overwrite (which `train --resume` can finish) is refused.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from paretune.config.schema import Config
from paretune.errors import ParetuneError
from paretune.run_replace import check_replaceable, has_results, staging_path

log = logging.getLogger("paretune")


def with_output_dir(config: Config, folder: Path) -> Config:
    return config.model_copy(update={"output": config.output.model_copy(update={"dir": str(folder)})})


def prepare_staging(config: Config, parent: Path, method: str) -> Path:
    """The empty staging folder for output.dir (not made yet); refuses, before any work, an
    output that exists without --overwrite (naming compress's own flag) or that is not a run."""
    target = Path(config.output.dir)
    if target.exists() and not target.is_dir():
        raise ParetuneError(f"--output {target} is a file, not a folder: choose another --output")
    if target.is_dir() and any(target.iterdir()):
        if not config.output.overwrite:
            raise ParetuneError(
                f"{target} already exists: `paretune compress {parent} --method {method} --overwrite` replaces "
                "it (the old folder stays until the new one has finished), or choose another --output")
        check_replaceable(target, config)
    staging = staging_path(target)
    if staging.exists():
        check_replaceable(staging, config)
        if _unfinished_training(staging):
            raise ParetuneError(
                f"{staging} holds an unfinished `paretune train` that replaces {target}: finish it with "
                f"`paretune train --resume {staging}` or delete it, then compress again")
        log.warning("removing %s, left by an earlier compress that did not finish", staging)
        shutil.rmtree(staging)
    return staging


def _unfinished_training(staging: Path) -> bool:
    """A train overwrite's staging folder (resumable): results, and a config naming the target.
    A compress's recovery fine-tune writes with output.dir = the staging folder itself, and a
    finished compress records its "compression" entry."""
    if not has_results(staging):
        return False
    from paretune.run_folder import RunFolder

    run = RunFolder(staging)
    try:
        own = Path(run.read_config().output.dir).resolve() == staging.resolve()
        compressed = (staging / "metrics.json").is_file() and "compression" in run.read_json("metrics.json")
    except (ParetuneError, OSError, ValueError):
        return False  # damaged beyond resuming: nothing to keep
    return not (own or compressed)


def discard(staging: Path, target: Path) -> None:
    """After a failed or interrupted compress: the half-made run goes; `target` was never touched."""
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)
        log.error("compress did not finish; %s is unchanged and the half-made %s was removed", target, staging)

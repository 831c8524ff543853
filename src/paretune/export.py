"""`paretune export RUN [--merge]`: copy a finished run's adapter or its full model out.

How a run's model/ (and adapter/) is stored and loaded lives in `paretune.stored`
(stored/trained.py says which form a trained model gets).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from paretune.errors import ParetuneError
from paretune.run_folder import TASK_FILE, RunFolder
from paretune.stored import form_of
from paretune.stored.trained import ADAPTER_DIR

NOT_MERGEABLE = (
    "its adapter cannot be folded into the base weights (prompt, prefix and p-tuning add virtual "
    "tokens; bottleneck adapters add non-linear layers)"
)


def export_run(run_dir: str | Path, merge: bool, output: str | Path | None = None) -> Path:
    """Copy a finished run's adapter (default) or merged full model (`merge`) to `output`."""
    run = RunFolder.open(run_dir)
    if not (run.model_dir / TASK_FILE).is_file():
        raise ParetuneError(f"{run_dir} has no trained model yet: did the run finish?")
    method = json.loads((run.model_dir / TASK_FILE).read_text()).get("method", "?")
    adapter_dir = run.path / ADAPTER_DIR
    if merge:
        if form_of(run.model_dir).over_base:
            raise ParetuneError(
                f"cannot export {run_dir} merged: method {method} trains an adapter, but {NOT_MERGEABLE}. "
                f"Export the adapter (without --merge), or use the run folder itself with paretune "
                "predict / serve."
            )
        source = run.model_dir
    else:
        if not adapter_dir.is_dir():
            raise ParetuneError(
                f"{run_dir} has no separate adapter: method {method} trains the model's own "
                "weights. Use --merge to export the full model."
            )
        source = adapter_dir
    target = Path(output) if output else run.path / "export" / ("merged" if merge else "adapter")
    if target.exists() and any(target.iterdir()):
        raise ParetuneError(f"{target} already exists and is not empty: choose another --output")
    shutil.copytree(source, target, dirs_exist_ok=True)
    if not merge:  # peft's README template names the base by this machine's path: a real card instead
        from paretune.model_card import write_adapter_card

        write_adapter_card(target, run, f"path/to/{target.name}")
    return target

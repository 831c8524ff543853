"""Whether loading a run folder may run Python code shipped inside it.

Run folders get shared, and a model folder can ship `.py` files that transformers imports when
told `trust_remote_code=True`. So trust to load a run comes only from the person loading it (a
`trust_remote_code=True` argument, the `--trust-remote-code` flag), never from the folder's own
config.yaml: a folder cannot vouch for itself. Training is different: `model.trust_remote_code`
in the user's own training config is the user's choice about a model they named.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from paretune.errors import ParetuneError

if TYPE_CHECKING:  # the CLI imports this module for its help text: keep that import light
    from paretune.config.schema import Config

FLAG = "--trust-remote-code"


def trust_for_run(run_path: Path, config: "Config", trust_remote_code: bool) -> bool:
    """The `trust_remote_code` to load this run with: exactly the caller's.

    A run trained with custom code cannot load without it (or would load the wrong model class
    silently, where transformers falls back to a built-in architecture), so refuse early and say
    what to do, instead of a transformers error about "the repository".
    """
    if config.model.trust_remote_code and not trust_remote_code:
        raise ParetuneError(
            f"{run_path} was trained with model.trust_remote_code: true, so its model needs custom Python "
            f"code that ships with it (model/*.py). paretune does not run code from a run folder on the "
            f"folder's own say-so. If you trust where {run_path} came from, pass {FLAG} "
            "(in Python: trust_remote_code=True)."
        )
    return trust_remote_code

# Help of the flag on every command that loads a run (predict, eval, serve, bench-infer, compress, distill).
FLAG_HELP = ("Allow Python code shipped in the run's model/ folder to run (runs trained with "
             "model.trust_remote_code). Only for runs you trust.")

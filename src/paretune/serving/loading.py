"""Load the run to serve, with any failure turned into one error naming the run (server and model processes)."""
from __future__ import annotations

import logging
from pathlib import Path

from paretune.errors import ParetuneError

log = logging.getLogger("paretune.serve")


def load_predictor(run_dir: Path, device: str | None = None, trust_remote_code: bool = False):
    """Predictor.load with any failure turned into one error that says which run and why."""
    from paretune.predictor import Predictor

    try:
        return Predictor.load(run_dir, device=device, trust_remote_code=trust_remote_code)
    except ParetuneError:
        raise
    except Exception as err:  # broken weights, wrong device, missing files: all stop the server
        log.debug("loading %s failed", run_dir, exc_info=True)
        raise ParetuneError(f"cannot serve {run_dir}: loading its model failed with "
                            f"{type(err).__name__}: {err}") from err

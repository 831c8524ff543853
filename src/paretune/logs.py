"""Logging set-up shared by every entry point (the CLI, server workers, sweep trials, training
processes). It lives here, at the bottom of the package, so none of them imports another's layer."""
from __future__ import annotations

import logging
import sys

# Libraries whose INFO lines repeat what paretune already says, or say nothing a user acts on.
NOISY_LOGGERS = ("accelerate", "transformers", "datasets", "urllib3", "filelock")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)

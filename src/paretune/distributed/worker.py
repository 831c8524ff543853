"""One training process started by `paretune train --nproc N` (python -m paretune.distributed.worker).

    --config FILE   train this validated config (output.dir already settled by the launcher)
    --resume RUN    continue the run folder RUN from its newest checkpoint

An error the user can fix (config, data, run folder) is left for the launcher to show once;
anything else keeps its traceback on stderr.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from paretune.errors import ParetuneError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paretune.distributed.worker")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config")
    what.add_argument("--resume")
    args = parser.parse_args(argv)

    from paretune.distributed.launch import USER_ERROR_EXIT, record_user_error
    from paretune.logs import setup_logging

    rank = int(os.environ.get("RANK", "0"))
    setup_logging()
    if rank > 0:  # the main process reports progress; the others only warnings
        logging.getLogger("paretune").setLevel(logging.WARNING)
    try:
        _train(args)
    except ParetuneError as err:
        record_user_error(rank, str(err))
        sys.exit(USER_ERROR_EXIT)


def _train(args: argparse.Namespace) -> None:
    from paretune.config import config_from_dict
    from paretune.runner import finetune, resume
    from paretune.yaml_file import read_yaml_mapping

    if args.resume:
        resume(args.resume)
        return
    finetune(config_from_dict(read_yaml_mapping(args.config), args.config))


if __name__ == "__main__":
    main()

"""How commands print results: a table for people, one JSON line for scripts."""
from __future__ import annotations

import json
import sys


def print_metrics(metrics: dict, title: str, as_json: bool) -> None:
    from paretune.evaluation.report import format_metrics

    # With --json the table goes to stderr so stdout holds only the JSON line.
    print(format_metrics(metrics, title), file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps(metrics, default=_plain))


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)

"""`paretune serve RUN [RUN ...] [--host 127.0.0.1] [--port 8000] [--api-key-file PATH] ...`.

Every option but --api-key-file and --verbose is a field of ServeSettings (serving/settings.py),
declared there once with its help text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.cli.settings_options import flag_name, settings_options
from paretune.errors import ParetuneError
from paretune.serving.settings import ServeSettings


@settings_options(ServeSettings)
def serve(
    runs: list[Path] = typer.Argument(..., help=(
        "Run folder written by paretune train (or a compressed copy). Several generative LoRA runs on one "
        "base: served over one copy of the base, each by its folder name (`model` in /v1/chat/completions).")),
    api_key_file: Optional[Path] = typer.Option(
        None, help="API keys, one a line (or sha256:<hex> digests). Also read: PARETUNE_API_KEYS."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too (to stderr)."),
    settings: dict = None,
) -> None:
    """Serve a trained run over HTTP: POST /v1/predict, /healthz, /readyz, /metrics, /docs; generative runs
    also the OpenAI-compatible /v1/chat/completions, /v1/completions and /v1/models."""
    from pydantic import ValidationError

    from paretune.logs import setup_logging
    from paretune.serving.auth import load_api_keys
    from paretune.serving.server import serve as run_server
    from paretune.validation import validation_problems

    setup_logging(verbose)
    try:
        validated = ServeSettings(**settings, api_key_hashes=load_api_keys(api_key_file))
    except ValidationError as err:
        raise ParetuneError("invalid serve options:\n" + "\n".join(
            f"  {key}: {message}" for key, message in validation_problems(err, key=_flag)
        )) from None
    run_server(runs[0] if len(runs) == 1 else runs, validated)


def _flag(loc: tuple) -> str:
    name = str(loc[0]) if loc else ""
    return "--api-key-file" if name == "api_key_hashes" else flag_name(ServeSettings, name)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

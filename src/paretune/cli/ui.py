"""`paretune ui [RUNS_DIR ...] [--host 127.0.0.1] [--port 8060] [--api-key-file PATH]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def ui(
    folders: Optional[list[Path]] = typer.Argument(
        None, help="Folders of runs, sweep folders or run folders (default: runs/ in the current folder)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Loopback by default; others need API keys."),
    port: int = typer.Option(8060, help="Port to listen on."),
    api_key_file: Optional[Path] = typer.Option(
        None, help="API keys, one a line (or sha256:<hex> digests). Also read: PARETUNE_API_KEYS. With keys, "
                   "every page asks for one (a login form) and scripts send `Authorization: Bearer KEY`."),
    predictors: int = typer.Option(2, help="Models the playground keeps loaded at once."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each request (path and status) to stderr."),
) -> None:
    """A web dashboard over run folders: runs, live curves, the frontier, comparison, sweeps and a
    playground. Read-only: it never writes, moves or deletes anything in the folders."""
    from paretune.logs import setup_logging
    from paretune.serving.auth import load_api_keys
    from paretune.ui.server import serve

    setup_logging(verbose)
    serve(list(folders or [Path("runs")]), host, port, load_api_keys(api_key_file), predictors=predictors)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)

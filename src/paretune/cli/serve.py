"""`paretune serve RUN [--host 127.0.0.1] [--port 8000] [--api-key-file PATH] ...`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.errors import ParetuneError
from paretune.remote_code import FLAG_HELP

# Settings fields whose command-line flag has another name.
_FLAGS = {"request_timeout_s": "timeout", "api_key_hashes": "api-key-file"}


def serve(
    run: Path = typer.Argument(..., help="Run folder written by paretune train (or a compressed copy)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Loopback by default; others need API keys."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Server processes, each loading its own copy of the model."),
    api_key_file: Optional[Path] = typer.Option(
        None, help="API keys, one a line (or sha256:<hex> digests). Also read: PARETUNE_API_KEYS."),
    allow_no_auth: bool = typer.Option(False, "--allow-no-auth", help="Serve a non-loopback address without API keys."),
    max_batch_size: int = typer.Option(32, help="Most texts per forward pass; 1 turns micro-batching off."),
    max_wait_ms: float = typer.Option(5.0, help="How long a batch waits for more requests to join."),
    max_queue: int = typer.Option(1024, help="Texts waiting for the model before requests get 503."),
    max_texts: int = typer.Option(64, help="Most texts in one request (422 above)."),
    max_chars: int = typer.Option(10_000, help="Most characters in one text (422 above)."),
    max_body_bytes: int = typer.Option(1 << 20, help="Largest request body in bytes (413 above)."),
    rate_limit: float = typer.Option(0.0, help="Requests per second per API key (429 above); 0 (default): off."),
    rate_burst: Optional[int] = typer.Option(None, help="Requests one key may send at once (2x rate)."),
    max_auth_failures: int = typer.Option(
        20, help="Failed API key attempts per client address per minute before 429; 0: off."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds before a prediction gets 504."),
    log_inputs: bool = typer.Option(False, "--log-inputs", help="Log request texts (masked, cut to 200 characters)."),
    mask_inputs: bool = typer.Option(True, help="Mask emails, phone numbers and IDs in logged texts."),
    ssl_certfile: Optional[Path] = typer.Option(None, help="TLS certificate (PEM); needs --ssl-keyfile."),
    ssl_keyfile: Optional[Path] = typer.Option(None, help="TLS private key (PEM)."),
    device: Optional[str] = typer.Option(None, help="torch device (default: cuda if available, else cpu)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too (to stderr)."),
) -> None:
    """Serve a trained run over HTTP: POST /v1/predict, /healthz, /readyz, /metrics, /docs."""
    from pydantic import ValidationError

    from paretune.logs import setup_logging
    from paretune.serving.auth import load_api_keys
    from paretune.serving.server import serve as run_server
    from paretune.serving.settings import ServeSettings

    setup_logging(verbose)
    try:
        settings = ServeSettings(
            host=host, port=port, workers=workers, device=device, trust_remote_code=trust_remote_code,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms, max_queue=max_queue, max_texts=max_texts, max_chars=max_chars,
            max_body_bytes=max_body_bytes, rate_limit=rate_limit, rate_burst=rate_burst,
            max_auth_failures=max_auth_failures,
            request_timeout_s=timeout, api_key_hashes=load_api_keys(api_key_file),
            allow_no_auth=allow_no_auth, log_inputs=log_inputs, mask_inputs=mask_inputs,
            ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
        )
    except ValidationError as err:
        raise ParetuneError("invalid serve options:\n" + "\n".join(
            f"  --{_FLAGS.get(str(e['loc'][0]), str(e['loc'][0]).replace('_', '-'))}: {e['msg']}"
            for e in err.errors()
        )) from None
    run_server(run, settings)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

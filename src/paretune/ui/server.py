"""Start the dashboard: check the folders and the keys, then run uvicorn until stopped.

Loopback by default. Any other address needs API keys, as `paretune serve` does: the dashboard
shows configs, data paths and costs, and the playground runs the models.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from paretune.errors import ParetuneError

log = logging.getLogger("paretune.ui")


def check_options(roots: list[Path], host: str, key_digests: tuple[str, ...]) -> None:
    from paretune.serving.settings import is_loopback

    missing = [str(r) for r in roots if not Path(r).is_dir()]
    if missing:
        raise ParetuneError(f"not a folder: {', '.join(missing)} (give folders of runs, sweep folders or run folders)")
    if not key_digests and not is_loopback(host):
        raise ParetuneError(f"--host {host} is reachable from other machines: give API keys with "
                            "--api-key-file PATH or PARETUNE_API_KEYS, or bind --host 127.0.0.1")


def serve(roots: list[Path], host: str, port: int, key_digests: tuple[str, ...], predictors: int = 2) -> None:
    import uvicorn

    from paretune.serving.server import Server
    from paretune.ui.app import create_app
    from paretune.ui.security import Access

    check_options(roots, host, key_digests)
    # Without keys only loopback names are answered: a page of another site whose domain resolves
    # to 127.0.0.1 (DNS rebinding) gets 400, not the runs.
    hosts = None if key_digests else sorted({"127.0.0.1", "localhost", "::1", "[::1]", host})
    app = create_app(roots, Access(key_digests), predictors=predictors, allowed_hosts=hosts)
    # Read every run once now, so that the first page need not parse 1,000 configs.
    threading.Thread(target=app.state.catalog.scan, name="paretune-ui-scan", daemon=True).start()
    shown_host = f"[{host}]" if ":" in host else host
    print(f"paretune ui: http://{shown_host}:{port}/  ({len(roots)} folder{'s' if len(roots) > 1 else ''}; "
          f"{'log in with an API key' if key_digests else 'no key needed on loopback'}; Ctrl+C stops)", flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False, access_log=False,
                            http="h11", timeout_graceful_shutdown=5)
    Server(config).run()

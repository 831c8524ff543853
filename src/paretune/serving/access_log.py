"""One log line per HTTP request: client, method, path, status, time. Never the query string.

uvicorn's own access log writes the path with its query string, so a key a caller put in the URL
(`?api_key=...`, which we refuse, but the caller does not know that yet) would land in the log.
The server turns uvicorn's access log off and writes this one instead. Paths are decoded by the
time they reach us, so control characters are escaped (a path holding a newline must not forge a
second log line) and long paths are cut.
"""
from __future__ import annotations

import json
import logging

from paretune.serving.metrics import call_and_record

log = logging.getLogger("paretune.access")

MAX_PATH_CHARS = 200


class AccessLog:
    """ASGI middleware: log every HTTP request once it is answered."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client") or ("-", 0)

        def answered(status: int, seconds: float) -> None:
            log.info('%s:%s "%s %s" %d %.1f ms', client[0], client[1], scope["method"][:16],
                     loggable_path(scope["path"]), status, seconds * 1000)

        await call_and_record(self.app, scope, receive, send, answered)


def loggable_path(path: str) -> str:
    """The path without control characters or quotes that could fake log structure, cut short."""
    escaped = json.dumps(path, ensure_ascii=True)[1:-1]
    return escaped if len(escaped) <= MAX_PATH_CHARS else escaped[:MAX_PATH_CHARS] + "..."

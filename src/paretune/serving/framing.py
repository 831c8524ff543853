"""Refuse requests whose body length could be read two ways (the request-smuggling shape).

A request that carries both Content-Length and Transfer-Encoding is framed one way by us (h11
lets Transfer-Encoding win, as RFC 9112 says) and possibly the other way by a proxy in front of
us; whatever one reads as "the next request" the other reads as body. RFC 9112 section 6.1 lets a
server refuse such a message and says it must then close the connection, which is what this
does: 400 with `Connection: close`, without reading the body. (h11 itself already refuses two
different Content-Lengths, a repeated Transfer-Encoding and codings other than chunked.)
"""
from __future__ import annotations

import json


class RequestFraming:
    """ASGI middleware: 400 and close for a request with both Content-Length and Transfer-Encoding."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            names = {name.lower() for name, _ in scope["headers"]}
            if b"content-length" in names and b"transfer-encoding" in names:
                return await _refuse(send)
        return await self.app(scope, receive, send)


async def _refuse(send) -> None:
    body = json.dumps({"detail": "a request may not carry both Content-Length and Transfer-Encoding"})
    # Connection: close makes uvicorn (h11) close the socket after this answer, so bytes the
    # client sent after the headers are never read as another request.
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body.encode()})

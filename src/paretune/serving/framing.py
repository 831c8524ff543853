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


# --- bodies that could be read two ways -----------------------------------------------------------
# The same ambiguity one layer up: a JSON object with a key twice is read first-wins by some parsers
# and last-wins by others (pydantic keeps the last), so a proxy or an audit log can see another
# request than the model does; a body without a Content-Type is a guess. Both are refused.


class DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json.loads' object_pairs_hook: a JSON object, or DuplicateKey when a key comes twice
    (parsers disagree on which copy wins)."""
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def refuse_duplicate_keys(body: bytes) -> None:
    """400 naming the key when any JSON object in `body` holds a key twice. A body that is no JSON
    at all passes: the route's validation answers it (422, with where it breaks)."""
    from fastapi import HTTPException

    try:
        json.loads(body, object_pairs_hook=unique_keys)
    except DuplicateKey as err:
        raise HTTPException(400, f"the JSON body holds the key {err.key[:100]!r} more than once: "
                                 "send each field once") from None
    except (ValueError, RecursionError):  # malformed or too deeply nested: the route's parser says so
        return


def media_type(headers) -> str:
    """The Content-Type without parameters, lower-cased ('' when none was sent)."""
    return headers.get("content-type", "").partition(";")[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))

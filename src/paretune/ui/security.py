"""Who may see the dashboard, and which files it may send.

With API keys (`--api-key-file`, PARETUNE_API_KEYS: serving/auth.py reads them the same way as
`paretune serve`), every route but the login form needs either a session cookie or an
`Authorization: Bearer KEY` header (scripts). The login form posts the key in the body, never
in a URL; the cookie holds a random session token, not the key, and is HttpOnly (no script
reads it) and SameSite=Strict (no other site's page sends it). Failed logins are throttled per
address as `paretune serve` throttles failed keys.

Every POST (the playground's predictions) carries an X-CSRF-Token header that only a page of
this dashboard holds: an HMAC of the session under a secret made at start-up. A form another
site makes a browser submit cannot set that header. The login form itself is checked by Origin.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from paretune.serving.auth import KeyChecker
from paretune.serving.limits import FailedAuthLimiter, retry_after_header

SESSION_COOKIE = "paretune_ui_session"
MAX_SESSIONS = 10_000
PUBLIC_PATHS = {"/login"}
# Served with every answer: scripts and styles only from this server, never framed by another site.
SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'; form-action 'self'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make browsers send `Origin: null` on our own forms
    "x-frame-options": "DENY",
}


class Access:
    """Keys, sessions and CSRF tokens of one running dashboard."""

    def __init__(self, key_digests: tuple[str, ...], secure_cookie: bool = False):
        self.keys = KeyChecker(key_digests)
        self.secure_cookie = secure_cookie
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, str] = {}  # token -> key id, kept in memory: a restart logs out
        self.failures = FailedAuthLimiter(max_failures=10, window_s=60.0)

    @property
    def enabled(self) -> bool:
        return self.keys.enabled

    def session_of(self, request: Request) -> str | None:
        """The session (or key) this request is allowed by; "open" when no keys are set."""
        if not self.enabled:
            return "open"
        token = request.cookies.get(SESSION_COOKIE)
        if token and token in self._sessions:
            return token
        return self.keys.identify(request.headers.get("authorization"))

    def csrf_token(self, session: str) -> str:
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, request: Request, session: str) -> bool:
        return hmac.compare_digest(request.headers.get("x-csrf-token", ""), self.csrf_token(session))

    def start_session(self, key_id: str) -> str:
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))  # the oldest
        token = secrets.token_urlsafe(32)
        self._sessions[token] = key_id
        return token

    def end_session(self, request: Request) -> None:
        self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)


def same_origin(request: Request) -> bool:
    """A browser's POST says where it came from (Sec-Fetch-Site, Origin); it must be this server.
    A client that sends neither (a script, curl) is no browser that another site could drive."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this server only (no //other.site, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login(request: Request, access: Access, render) -> Response:
    """GET: the form. POST: check the key, set the session cookie, go on to the page asked for."""
    client = request.client.host if request.client else "unknown"
    if request.method == "GET":
        return render("login.html", {"next": safe_next(request.query_params.get("next")), "error": None})
    if not same_origin(request):
        return JSONResponse({"detail": "login form posted from another site"}, status_code=403)
    wait = access.failures.retry_after(client)
    if wait:
        return JSONResponse({"detail": "too many failed logins; wait and retry"}, status_code=429,
                            headers={"retry-after": retry_after_header(wait)})
    body = (await request.body())[:4096].decode("utf-8", "replace")
    form = parse_qs(body, keep_blank_values=True)
    key, target = (form.get("key") or [""])[0], safe_next((form.get("next") or ["/"])[0])
    key_id = access.keys.identify(f"Bearer {key}") if key else None
    if key_id is None:
        access.failures.failed(client)
        return render("login.html", {"next": target, "error": "That key is not valid."}, status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, access.start_session(key_id), httponly=True, samesite="strict",
                        secure=access.secure_cookie, path="/")
    return response


def refused(request: Request) -> Response:
    """No session: a browser asking for a page goes to the login form; anything else gets 401."""
    wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
    if wants_page:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return JSONResponse({"detail": "log in first (or send Authorization: Bearer <key>)"}, status_code=401)


def run_file(run_dir: Path, name: str) -> Path | None:
    """A file directly inside the run folder, by its exact name, that resolves inside the folder
    (a symlink out is refused); None for anything else. The name is matched against the folder's
    listing, never joined to a path as given."""
    try:
        listed = {entry.name for entry in run_dir.iterdir()}
    except OSError:
        return None
    if name not in listed or name.startswith("."):
        return None
    path = (run_dir / name).resolve()
    if not path.is_relative_to(run_dir.resolve()) or not path.is_file():
        return None
    return path

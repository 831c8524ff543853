"""The dashboard's FastAPI app: middleware (keys, security headers), templates, static files, and
the routes of pages.py and playground.py.

Read-only over the file system: no route writes, moves or deletes anything under the run
folders, and files reach a client only through security.run_file (a name from a run folder's
own listing) or the package's own static folder.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from paretune.ui import security
from paretune.ui.catalog import Catalog
from paretune.ui.security import PUBLIC_PATHS, SECURITY_HEADERS, Access
from paretune.version import __version__

log = logging.getLogger("paretune.ui")
HERE = Path(__file__).parent


def create_app(roots: list[Path], access: Access | None = None, predictors: int = 2,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """`allowed_hosts`: Host headers answered (others get 400); server.py gives the loopback names
    when no key is set, so that another site's page cannot reach the dashboard through a domain
    that resolves to 127.0.0.1 (DNS rebinding)."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from paretune.ui import pages, playground

    access = access or Access(())
    # No /docs: the dashboard's JSON routes serve its own pages, not a public API.
    app = FastAPI(title="paretune ui", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)
    app.state.catalog = Catalog(roots)
    app.state.access = access
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(usd=_usd, num=_num, duration=_duration, when=_when)

    def render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
        session = getattr(request.state, "session", None) or "open"
        return templates.TemplateResponse(request, name, {
            **context, "csrf": access.csrf_token(session), "logged_in": access.enabled and session != "open",
            "version": __version__}, status_code=status_code)

    app.state.render = render

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        response = await _guarded(request, call_next, access, render)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("cache-control", "no-store")
        # The path only: a query string may hold what a user typed (a filter), never log it.
        log.debug("%s %s %d %.0f ms", request.method, request.url.path, response.status_code,
                 (time.perf_counter() - started) * 1000)
        return response

    @app.api_route("/login", methods=["GET", "POST"], include_in_schema=False)
    async def login(request: Request):
        if not access.enabled:
            return RedirectResponse("/", status_code=303)
        return await security.login(request, access, lambda name, ctx, status_code=200:
                                    render(request, name, ctx, status_code))

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        access.end_session(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(security.SESSION_COOKIE, path="/")
        return response

    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)  # added last: checked first
    pages.add_routes(app)
    playground.add_routes(app, max_loaded=predictors)
    app.mount("/static", StaticFiles(directory=str(HERE / "static"), follow_symlink=False), name="static")
    return app


async def _guarded(request: Request, call_next, access: Access, render) -> Response:
    if request.url.path in PUBLIC_PATHS:
        request.state.session = None
        return await call_next(request)
    session = access.session_of(request)
    if session is None:
        return security.refused(request)
    request.state.session = session
    if request.method not in ("GET", "HEAD") and request.url.path != "/logout" and not access.csrf_ok(request, session):
        return JSONResponse({"detail": "missing or wrong X-CSRF-Token: post from the dashboard's own pages"},
                            status_code=403)
    if request.url.path == "/logout" and not security.same_origin(request):
        return JSONResponse({"detail": "logout posted from another site"}, status_code=403)
    return await call_next(request)


def _usd(value) -> str:
    if value is None:
        return "–"
    return f"${value:.2f}" if value >= 1 else (f"${value:.4f}" if value >= 0.0001 else f"${value:.2g}")


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}g}"


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _when(epoch) -> str:
    return "–" if epoch is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))

"""The dashboard's pages and their data routes (the playground's are in playground.py).

    GET /                     runs: sort, filter, pick several to compare (?partial=1: the rows alone,
                              which the page polls so that new runs appear)
    GET /run/ID/              one run: config, metrics, costs, model card, live curves
    GET /run/ID/NAME          a file directly inside the run folder (its pictures)
    GET /api/curves/ID        the run's curves from a byte offset of metrics.jsonl (curves.py)
    GET /api/runs             the runs table as JSON
    GET /frontier             quality against training and serving dollars, with the CLI's answers
    GET /compare?run=A&run=B  runs side by side, config differences marked, curves overlaid
    GET /sweeps               each sweep's variants, their state and the best so far
"""
from __future__ import annotations

import mimetypes
from dataclasses import asdict

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from paretune.ui.catalog import Catalog, RunInfo
from paretune.ui.curves import read_curves
from paretune.ui.frontier_view import frontier_context, questions_from
from paretune.ui.run_view import compare_context, run_page_context
from paretune.ui.security import run_file

COLUMNS = [("name", "run"), ("task", "task"), ("method", "method"), ("base_model", "base model"),
           ("status", "status"), ("quality", "metric"), ("train_usd", "training $"),
           ("serve_usd_per_million", "$ / 1M predictions"), ("wall_s", "time"), ("started", "date")]
SORTABLE = {name for name, _ in COLUMNS}
STATUSES = ("running", "finished", "failed", "interrupted")
MAX_COMPARED = 8
# Files of a run folder the browser may fetch: pictures only. Text files are shown on the page.
SERVED_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def add_routes(app: FastAPI) -> None:
    catalog: Catalog = app.state.catalog
    render = app.state.render

    @app.get("/", include_in_schema=False)
    def runs_page(request: Request):
        query = request.query_params
        runs, _ = catalog.scan()
        shown, sort, descending = filter_and_sort(runs, query)
        context = {"runs": shown, "total": len(runs), "columns": COLUMNS, "sort": sort, "descending": descending,
                   "tasks": sorted({r.task for r in runs if r.task}), "statuses": STATUSES,
                   "methods": sorted({r.method for r in runs if r.method}), "query": dict(query),
                   "page": "runs"}
        return render(request, "_rows.html" if query.get("partial") else "runs.html", context)

    @app.get("/api/runs", include_in_schema=False)
    def runs_json(request: Request):
        shown, _, _ = filter_and_sort(catalog.scan()[0], request.query_params)
        return [{**asdict(run), "path": None} for run in shown]  # ids, not server paths

    @app.get("/run/{run_id}", include_in_schema=False)
    def run_redirect(run_id: str):
        _run(catalog, run_id)
        return RedirectResponse(f"/run/{run_id}/", status_code=308)

    @app.get("/run/{run_id}/", include_in_schema=False)
    def run_page(request: Request, run_id: str):
        run = _run(catalog, run_id)
        return render(request, "run.html", {**run_page_context(catalog, run), "page": "runs"})

    @app.get("/run/{run_id}/{name}", include_in_schema=False)
    def run_picture(run_id: str, name: str):
        run = _run(catalog, run_id)
        path = run_file(run.path, name)
        suffix = path.suffix.lower() if path else ""
        if path is None or suffix not in SERVED_TYPES:
            raise HTTPException(404, "no such picture in this run folder")
        return FileResponse(path, media_type=SERVED_TYPES[suffix] or mimetypes.guess_type(name)[0])

    @app.get("/api/curves/{run_id}", include_in_schema=False)
    def curves(run_id: str, offset: int = 0):
        return JSONResponse(read_curves(_run(catalog, run_id).path, max(0, offset)))

    _add_comparison_routes(app)


def _add_comparison_routes(app: FastAPI) -> None:
    """The pages over several runs: the frontier, compare, sweeps."""
    catalog: Catalog = app.state.catalog
    render = app.state.render

    @app.get("/frontier", include_in_schema=False)
    def frontier_page(request: Request):
        query = dict(request.query_params)
        questions, problems = questions_from(query)
        split = query.get("split") if query.get("split") in ("validation", "test") else "validation"
        context = frontier_context(catalog.scan()[0], questions, query.get("metric") or None, split)
        return render(request, "frontier.html", {**context, "query": query, "problems": problems,
                                                 "split": split, "page": "frontier"})

    @app.get("/compare", include_in_schema=False)
    def compare_page(request: Request):
        ids = list(dict.fromkeys(request.query_params.getlist("run")))[:MAX_COMPARED]
        runs = [_run(catalog, run_id) for run_id in ids]
        if len(runs) < 2:
            return render(request, "compare.html", {"runs": runs, "too_few": True, "page": "compare"})
        only = request.query_params.get("all") != "1"
        return render(request, "compare.html", {**compare_context(catalog, runs, only), "too_few": False,
                                                "page": "compare"})

    @app.get("/sweeps", include_in_schema=False)
    def sweeps_page(request: Request):
        _, sweeps = catalog.scan()
        shown = [{"sweep": sweep, "best": best_run(sweep.runs),
                  "counts": {s: sum(1 for r in sweep.runs if r.status == s) for s in STATUSES}}
                 for sweep in sweeps]
        return render(request, "sweeps.html", {"sweeps": shown, "page": "sweeps"})


def _run(catalog: Catalog, run_id: str) -> RunInfo:
    run = catalog.find(run_id)
    if run is None:
        raise HTTPException(404, "no run with this id in the folders given")
    return run


def filter_and_sort(runs: list[RunInfo], query) -> tuple[list[RunInfo], str, bool]:
    task, method, status = query.get("task"), query.get("method"), query.get("status")
    text = (query.get("q") or "").strip().lower()
    shown = [r for r in runs
             if (not task or r.task == task) and (not method or r.method == method)
             and (not status or r.status == status)
             and (not text or text in " ".join(filter(None, (r.id, r.base_model, r.task, r.method))).lower())]
    sort = query.get("sort") if query.get("sort") in SORTABLE else "started"
    descending = query.get("desc", "1" if sort == "started" else "0") == "1"
    present = sorted((r for r in shown if getattr(r, sort) is not None), key=lambda r: r.sort_key(sort),
                     reverse=descending)
    return present + [r for r in shown if getattr(r, sort) is None], sort, descending  # blanks last


def best_run(runs: list[RunInfo]) -> RunInfo | None:
    """The finished run with the best quality, in its metric's direction (mse: lower is better)."""
    from paretune.tasks.base import Task

    scored = [r for r in runs if r.status == "finished" and r.quality is not None]
    if not scored:
        return None
    lower = scored[0].metric in Task.lower_is_better
    return (min if lower else max)(scored, key=lambda r: r.quality)

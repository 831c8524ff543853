"""`paretune ui`: a read-only web dashboard over folders of run folders.

    catalog.py        find runs and sweeps under the folders given; the only way to a run folder
    curves.py         metrics.jsonl from a byte offset, thinned for long runs (live curves)
    run_view.py       what the run and compare pages show of a run
    frontier_view.py  the frontier's points and answers (paretune.frontier) as SVG scatter plots
    pages.py          the pages and their JSON routes
    playground.py     predictions through the same Predictor `paretune serve` uses
    chat.py           streamed chat with a generative run through serve's ChatRunner and engine
    security.py       keys, login sessions, CSRF, and which files may be sent
    app.py            the FastAPI app; server.py starts it
    templates/, static/  Jinja2 pages, CSS, script and the vendored uPlot (MIT)
"""

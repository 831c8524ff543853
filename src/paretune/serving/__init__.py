"""`paretune serve`: an HTTP inference server over a run folder's Predictor.

    settings.py  every option, validated (ServeSettings)
    server.py    load the model, start uvicorn (one process or several)
    app.py       the FastAPI routes and the order of checks
    batcher.py   dynamic micro-batching in one model thread
    auth.py      API keys (hashed, constant-time compare)
    limits.py    body size, texts per request, characters per text, rate limit
    metrics.py   Prometheus metrics
    masking.py   masking of personal data in logged input
"""
from __future__ import annotations

from paretune.serving.settings import ServeSettings

__all__ = ["ServeSettings"]

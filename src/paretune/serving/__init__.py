"""`paretune serve`: an HTTP inference server over a run folder's Predictor.

    settings.py  every option, validated (ServeSettings)
    server.py    load the model, start uvicorn (one process or several)
    app.py       the FastAPI routes and the order of checks
    model_pool.py     the model in processes of its own, fed from a queue (default on a CPU)
    model_process.py  one model process: load, warm up, answer batches over a pipe
    onnx_engine.py    ONNX Runtime as the CPU engine (export at start-up, parity-checked)
    batcher.py   dynamic micro-batching in one model thread (GPU, images, --model-processes 0)
    auth.py      API keys (hashed, constant-time compare)
    limits.py    body size, texts per request, characters per text, rate limit
    metrics.py   Prometheus metrics
    masking.py   masking of personal data in logged input
"""
from __future__ import annotations

from paretune.serving.settings import ServeSettings

__all__ = ["ServeSettings"]

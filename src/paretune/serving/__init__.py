"""`paretune serve`: an HTTP inference server over a run folder's Predictor.

    settings.py  every option, validated (ServeSettings)
    server.py    load the model, start uvicorn (one process or several)
    app.py       the FastAPI routes and the order of checks
    model_pool.py     the model in processes of its own, fed from a queue (default on a CPU)
    model_process.py  one model process: load, warm up, answer batches over a pipe
    model_link.py     the pipe to one model process, read and written by threads of its own
    onnx_engine.py    ONNX Runtime as the CPU engine (export at start-up, parity-checked)
    batcher.py   dynamic micro-batching in one model thread (GPU, images, --model-processes 0)
    auth.py      API keys (hashed, constant-time compare)
    limits.py    body size, texts per request, characters per text, rate limit
    metrics.py   Prometheus metrics
    masking.py   masking of personal data in logged input

Generative runs (the OpenAI-compatible API over the decoding engine in paretune.inference):

    chat_routes.py    /v1/chat/completions, /v1/completions, /v1/models (plain and SSE streaming)
    openai_schema.py  the request fields, validated; 400 naming each bad or unimplemented one
    chat_runner.py    the engine's thread as the server's model runner (deadlines, disconnects)
    chat_adapters.py  several LoRA runs over one base (`paretune serve RUN_A RUN_B`)
    chat_metrics.py   time to first token, inter-token latency, tokens/s, running and queued
    images.py         /v1/predict-images (image runs)
"""
from __future__ import annotations

from paretune.serving.settings import ServeSettings

__all__ = ["ServeSettings"]

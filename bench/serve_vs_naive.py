"""`paretune serve` against the server a user writes in ten minutes, side by side, in one run.

    python bench/serve_vs_naive.py RUN [--also RUN_COMPRESSED] [--concurrency 1 8 32] [--seconds 20]

The peer is FastAPI + transformers `pipeline("text-classification")` in a plain `def` endpoint
(FastAPI runs it in its thread pool), one uvicorn worker, no auth and no limits: the run is
exported to a plain transformers folder (`paretune export`) that the pipeline loads. paretune
serves the run folder itself with an API key shared by all clients and `--rate-limit 0`.
Both get the same closed-loop clients (bench/load_test.py: each sends one text, waits for the
answer, sends the next) on loopback, one server at a time, with the same torch thread count.
The clients are raw keep-alive HTTP/1.1 connections (load_test.RawClient), because the load
generator shares the machine's cores with the server under test: httpx spent ~4 ms of CPU per
request, as much as paretune's whole request path. Beside requests/s the table gives the CPU
time the server (all its processes) spent per answer, which other jobs on a shared machine move
far less than requests/s, and the load average during each level.
Prints a table and, per concurrency, paretune's throughput over the peer's, and checks the
issue's targets: at 32 clients >= 3x the peer's requests/s (>= 4x for `--also`), p99 below the
peer's p50, zero errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_test import ServerProcess, free_port, load, sample_texts, served  # noqa: E402

NAIVE_SERVER = textwrap.dedent('''
    import os
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    classifier = pipeline("text-classification", model=os.environ["NAIVE_MODEL"])
    app = FastAPI()

    class Request(BaseModel):
        texts: list[str]

    @app.post("/v1/predict")
    def predict(request: Request):
        return {"predictions": classifier(request.texts)}

    @app.get("/readyz")
    def ready():
        return {"status": "ready"}
''')


class naive_served(ServerProcess):
    """The peer on a free loopback port (no key: the clients' header is ignored)."""

    def __init__(self, model_dir: Path, threads: int, workdir: Path):
        (workdir / "naive_server.py").write_text(NAIVE_SERVER)
        port = free_port()
        env = {**os.environ, "NAIVE_MODEL": str(model_dir), "OMP_NUM_THREADS": str(threads),
               "PYTHONPATH": str(workdir)}
        command = [sys.executable, "-m", "uvicorn", "naive_server:app", "--host", "127.0.0.1", "--port", str(port),
                   "--no-access-log"]
        super().__init__(command, port, "unused", env, cwd=workdir)


def main() -> None:
    args = parse_args()
    texts = sample_texts(args.run)
    results: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="paretune-naive-") as tmp:
        exported = Path(tmp) / "exported"
        subprocess.run([sys.executable, "-m", "paretune", "export", str(args.run), "--merge", "--output",
                        str(exported)], check=True, stdout=subprocess.DEVNULL)
        servers = {"naive (FastAPI + pipeline)": lambda: naive_served(exported, args.threads, Path(tmp)),
                   f"paretune serve {args.run.name}": lambda: served(args.run, [], args.threads)}
        if args.also:
            servers[f"paretune serve {args.also.name}"] = lambda: served(args.also, [], args.threads)
        for name, start in servers.items():
            server = start()
            with server as (url, key):
                for concurrency in args.concurrency:
                    # CPU per answer, server side: unlike requests/s, it hardly moves with other
                    # jobs on a shared machine, so it tells the servers apart even there.
                    cpu_before, load_before = server.cpu_seconds(), os.getloadavg()[0]
                    figures = asyncio.run(load(url, key, texts, concurrency, args.requests, args.seconds, 1))
                    figures["server_cpu_ms"] = round(1000 * (server.cpu_seconds() - cpu_before)
                                                     / max(figures["requests"], 1), 1)
                    figures["load_average"] = round((load_before + os.getloadavg()[0]) / 2, 1)
                    results.setdefault(name, {})[concurrency] = figures
                    print(f"{name:40s} c={concurrency:<3d} {figures['throughput_rps']:8.1f} req/s  "
                          f"p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
                          f"errors {figures['errors']}  CPU {figures['server_cpu_ms']} ms/req  "
                          f"load {figures['load_average']}", file=sys.stderr)
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "results": results}, indent=2) + "\n")


def report(results: dict[str, dict[int, dict]], args) -> str:
    naive, *ours = list(results)
    lines = ["| server | clients | requests | req/s | p50 ms | p99 ms | errors | server CPU ms/req | load avg | vs naive |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in results:
        for c, r in results[name].items():
            ratio = r["throughput_rps"] / max(results[naive][c]["throughput_rps"], 1e-9)
            lines.append(f"| {name} | {c} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | "
                         f"{r['p99_ms']} | {r['errors']} | {r['server_cpu_ms']} | {r['load_average']} | "
                         f"{ratio:.2f}x |")
    top = max(args.concurrency)
    lines.append("")
    for name, target in zip(ours, (3.0, 4.0)):
        r, peer = results[name][top], results[naive][top]
        ratio = r["throughput_rps"] / max(peer["throughput_rps"], 1e-9)
        met = ratio >= target and r["p99_ms"] < peer["p50_ms"] and r["errors"] == 0
        lines.append(f"{name} at {top} clients: {ratio:.2f}x the naive server (target {target:g}x), p99 "
                     f"{r['p99_ms']} ms vs naive p50 {peer['p50_ms']} ms, {r['errors']} errors: "
                     f"{'met' if met else 'NOT met'}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a text-classification run folder")
    parser.add_argument("--also", type=Path, help="a compressed form of the run (e.g. onnx-int8), served too")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=10_000, help="answers per level (at most)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per level (at most)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of each server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


if __name__ == "__main__":
    main()

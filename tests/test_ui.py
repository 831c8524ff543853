"""`paretune ui` over HTTP: pages, data routes, keys, and what it must never read or write.

The runs: two real tiny classification runs (so the playground has a Predictor to load) and
folders written the way the runner writes them (a sweep with a failed variant, a run still
logging). tests/test_ui_browser.py drives the same folders in Chromium.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

import paretune
from conftest import sentiment_rows, write_csv
from paretune.errors import ParetuneError
from paretune.serving.auth import hash_key
from paretune.ui.app import create_app
from paretune.ui.catalog import Catalog, yaml_sections
from paretune.ui.curves import read_curves, thin
from paretune.ui.security import SESSION_COOKIE, Access
from paretune.ui.server import check_options

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEY = "ui-test-key-0123456789abcdef"


# --- run folders -------------------------------------------------------------------------------


def train_run(folder: Path, tiny_model_dir: Path, name: str, lr: float) -> Path:
    """A finished tiny run: 2 steps, an evaluation each (two points per curve)."""
    data = folder / "data"
    data.mkdir(exist_ok=True)
    return paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(data / "train.csv", sentiment_rows(32, seed=1))),
                 "validation": str(write_csv(data / "validation.csv", sentiment_rows(8, seed=2))),
                 "max_length": 16, "cache_dir": str(data / "cache")},
        "training": {"max_steps": 2, "batch_size": 16, "lr": lr, "warmup_ratio": 0.0, "seed": 7,
                     "save_every": 10_000, "eval_every": 1},
        "output": {"dir": str(folder / name)},
    }).path


_TRAINED: dict[Path, Path] = {}  # tiny model folder -> its two trained runs, once per session


def trained_runs(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """cls-a and cls-b, trained once for this file and tests/test_ui_browser.py."""
    if tiny_model_dir not in _TRAINED:
        folder = tmp_path_factory.mktemp("ui-trained")
        train_run(folder, tiny_model_dir, "cls-a", 1e-3)
        train_run(folder, tiny_model_dir, "cls-b", 5e-3)
        shutil.rmtree(folder / "data")
        _TRAINED[tiny_model_dir] = folder
    return _TRAINED[tiny_model_dir]


def make_runs(root: Path, trained: Path) -> Path:
    """root/ holding cls-a and cls-b (trained), sweep-a/ (v1 finished, v2 failed) and live/ (running)."""
    for name in ("cls-a", "cls-b"):
        shutil.copytree(trained / name, root / name)
    first = root / "cls-a"
    (first / "inference.json").write_text(json.dumps({"usd_per_million": 0.05, "latency_ms": {"p50": 3.0},
                                                      "throughput_per_s": 560.0}))
    sweep = root / "sweep-a"
    shutil.copytree(first, sweep / "runs" / "v1", ignore=shutil.ignore_patterns("model"))
    (sweep / "runs" / "v2").mkdir()
    shutil.copy(first / "config.yaml", sweep / "runs" / "v2" / "config.yaml")
    (sweep / "sweep.json").write_text(json.dumps({"variants": {
        "v1": {"status": "finished", "run_dir": "runs/v1"},
        "v2": {"status": "failed", "run_dir": "runs/v2", "error": "CUDA out of memory"}}}))
    live = root / "live"
    live.mkdir()
    shutil.copy(first / "config.yaml", live / "config.yaml")
    write_steps(live, range(1, 6))
    return root


def write_steps(run_dir: Path, steps, evaluate_every: int = 2) -> None:
    """metrics.jsonl lines as the training loop appends them."""
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        for step in steps:
            row = {"step": step, "epoch": step / 10, "train_loss": 1.0 / step, "lr": 1e-3, "train_s": 0.1}
            if step % evaluate_every == 0:
                row["validation"] = {"loss": 1.2 / step, "accuracy": 1 - 1 / (step + 1),
                                     "per_class": {"a": {"f1": 0.5}}}
            f.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir) -> Path:
    return make_runs(tmp_path_factory.mktemp("ui") / "runs", trained_runs(tmp_path_factory, tiny_model_dir))


@pytest.fixture(scope="module")
def client(root) -> TestClient:
    return TestClient(create_app([root]))


@pytest.fixture(scope="module")
def keyed(root) -> TestClient:
    return TestClient(create_app([root], Access((hash_key(KEY),))), follow_redirects=False)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)


@contextlib.contextmanager
def live_server(app):
    """A real uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, http="h11"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the ui server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- pages and data ------------------------------------------------------------------------------


def test_runs_page_lists_every_run_with_its_status_and_sorts(client):
    page = client.get("/").text
    ids = re.findall(r'<tr data-id="([^"]+)" class="status-(\w+)"', page)
    assert dict(ids) == {"cls-a": "finished", "cls-b": "finished", "sweep-a~runs~v1": "finished",
                         "sweep-a~runs~v2": "failed", "live": "running"}
    by_name = [i for i, _ in re.findall(r'<tr data-id="([^"]+)" class="status-(\w+)"',
                                        client.get("/?sort=name&desc=0").text)]
    assert by_name == sorted(by_name)
    assert "CUDA out of memory" in page  # a failed variant says why
    rows = client.get("/?partial=1&status=failed").text  # what the page polls
    assert "sweep-a~runs~v2" in rows and "cls-a" not in rows and "<html" not in rows
    assert [r["id"] for r in client.get("/api/runs?q=sweep&sort=name&desc=0").json()] == \
        ["sweep-a~runs~v1", "sweep-a~runs~v2"]


def test_run_page_shows_metrics_cost_card_and_config(client):
    page = client.get("/run/cls-a/").text
    for shown in ("validation metrics", "per class", "confusion matrix", "Cost", "device-hours",
                  "Model card", "lr: 0.001", 'data-chart="loss"'):
        assert shown in page, shown
    assert client.get("/run/cls-a", follow_redirects=False).headers["location"] == "/run/cls-a/"
    assert client.get("/run/nope/").status_code == 404


def test_curves_are_read_from_an_offset_as_the_file_grows(client, root):
    first = client.get("/api/curves/live").json()
    assert first["steps"] == [1, 2, 3, 4, 5] and first["series"]["validation.accuracy"][1] == pytest.approx(2 / 3)
    assert "validation.per_class" not in first["series"]
    with open(root / "live" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "train_loss": 0.1}) + "\n" + '{"step": 7, "train_lo')  # 7 being written
    more = client.get(f"/api/curves/live?offset={first['offset']}").json()
    assert more["steps"] == [6] and not more["reset"]
    assert client.get(f"/api/curves/live?offset={10**9}").json()["reset"]  # the file was rewritten shorter


def test_a_long_run_is_thinned_keeping_evaluations_and_the_last_step(tmp_path):
    rows = [{"step": s, "train_loss": 1.0, **({"validation": {"accuracy": 0.5}} if s % 1000 == 0 else {})}
            for s in range(1, 100_001)]
    kept = thin(rows, 2000)
    assert len(kept) <= 2001 and kept[-1]["step"] == 100_000
    assert sum("validation" in r for r in kept) == 100  # every evaluation kept
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5000]))
    assert read_curves(tmp_path, max_points=500)["kept"] <= 501


def test_frontier_marks_points_links_them_and_answers_constraints(client):
    page = client.get("/frontier?min_metric=0.1&budget=1").text
    charts = re.findall(r'<figure class="frontier-chart" data-points="(\d+)"', page)
    assert charts == ["3", "2"]  # three finished runs with training $; cls-a and its copy v1 benchmarked
    assert 'href="/run/cls-a/"' in page and "pareto" in page
    assert "cheapest to train reaching accuracy &gt;= 0.1" in page and "best training cost" in page
    assert "min metric: &#39;x&#39; is not a number" in client.get("/frontier?min_metric=x").text


def test_compare_highlights_config_differences(client):
    page = client.get("/compare?run=cls-a&run=cls-b").text
    differing = re.findall(r'<tr class="diff"><th>([^<]+)</th>', page)
    assert "training.lr" in differing and "model.name_or_path" not in differing
    assert "Pick two or more runs" in client.get("/compare?run=cls-a").text


def test_sweeps_page_shows_states_and_the_best_so_far(client):
    page = client.get("/sweeps").text
    assert "1 finished" in page and "1 failed" in page and "Best so far" in page
    assert 'href="/run/sweep-a~runs~v1/">v1</a>' in page


def test_playground_predicts_through_the_runs_predictor(client):
    token = csrf_of(client.get("/playground?run=cls-a").text)
    answer = client.post("/api/predict/cls-a", json={"text": "a lovely film"}, headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["prediction"]
    assert prediction["label"] in ("negative", "positive") and set(prediction["scores"]) == {"negative", "positive"}
    assert client.post("/api/predict/cls-a", json={"text": "x"}).status_code == 403  # no CSRF token
    assert client.post("/api/predict/cls-a", json={"text": ""}, headers={"X-CSRF-Token": token}).status_code == 422
    assert client.post("/api/predict/live", json={"text": "x"}, headers={"X-CSRF-Token": token}).status_code == 404


@pytest.fixture(scope="module")
def chat_runs(tmp_path_factory) -> Path:
    from test_serve_openai import trained_once  # the tiny chat run the serving tests share

    return trained_once(tmp_path_factory, "chat").parent


@pytest.fixture(scope="module")
def chat_client(chat_runs) -> TestClient:
    return TestClient(create_app([chat_runs]))


def test_playground_answers_and_chats_through_a_generative_run(chat_client):
    client = chat_client
    token = csrf_of(client.get("/playground?run=chat").text)
    answer = client.post("/api/predict/chat", json={"text": "hello"}, headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json()["prediction"]["completion"], str)
    assert 'data-chat="1"' in client.get("/playground?run=chat").text
    turns = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                          {"role": "user", "content": "and now?"}]}
    with client.stream("POST", "/api/chat/chat", json=turns, headers={"X-CSRF-Token": token}) as streamed:
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1]["done"] and events[-1]["finish_reason"] in ("stop", "length") and not events[-1]["error"]
    bad = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}
    assert client.post("/api/chat/chat", json=bad, headers={"X-CSRF-Token": token}).status_code == 422
    assert client.post("/api/chat/chat", json=turns).status_code == 403  # no CSRF token


def test_a_generation_past_the_playgrounds_deadline_is_stopped_not_left_running(chat_client, monkeypatch):
    """A slow model that never ends its answer: the request gets 504 at the deadline and the
    engine stops decoding it (its running batch empties, no forward pass after that)."""
    from paretune.ui import playground

    token = csrf_of(chat_client.get("/playground?run=chat").text)
    assert chat_client.post("/api/predict/chat", json={"text": "hi"}, headers={"X-CSRF-Token": token}).status_code == 200
    runner = chat_client.app.state.chat_runners._current[1]  # started by that answer
    engine, model = runner.engine, runner.predictor.model
    forward_passes = []

    def slow_forward(*args, **kwargs):
        forward_passes.append(time.monotonic())
        time.sleep(0.05)
        return type(model).forward(model, *args, **kwargs)

    monkeypatch.setattr(model, "forward", slow_forward, raising=False)
    monkeypatch.setattr(engine, "end_ids", set())  # the answer never ends by itself: ~230 steps, 11 s
    monkeypatch.setattr(runner.task.config, "max_new_tokens", 10_000)
    monkeypatch.setattr(playground, "DEADLINE_S", 0.5)
    started = time.monotonic()
    answer = chat_client.post("/api/predict/chat", json={"text": "hello"}, headers={"X-CSRF-Token": token})
    assert answer.status_code == 504 and "stopped" in answer.json()["detail"]
    assert time.monotonic() - started < 3
    wait_until = time.monotonic() + 2
    while engine.scheduler.running or engine.scheduler.has_work():
        assert time.monotonic() < wait_until, "the engine still decodes the abandoned answer"
        time.sleep(0.02)
    done = len(forward_passes)
    time.sleep(0.3)
    assert len(forward_passes) == done < 40  # stopped after about 0.5 s of 0.05 s steps


def test_a_generative_run_the_engine_cannot_take_is_refused_with_the_reason(chat_runs, monkeypatch):
    from paretune.serving import chat_runner

    def refuse(*args, **kwargs):  # what the engine says of a prefix-tuned run
        raise ParetuneError("a prefix, prompt or p-tuning run keeps its virtual tokens in peft's own cache")

    monkeypatch.setattr(chat_runner.ChatRunner, "__init__", refuse)
    client = TestClient(create_app([chat_runs]))
    token = csrf_of(client.get("/playground?run=chat").text)
    answer = client.post("/api/predict/chat", json={"text": "hi"}, headers={"X-CSRF-Token": token})
    assert answer.status_code == 422 and "p-tuning" in answer.json()["detail"]
    turns = {"messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/api/chat/chat", json=turns, headers={"X-CSRF-Token": token}).status_code == 422


def test_playground_predicts_an_uploaded_image(tmp_path_factory, tiny_vit_dir):
    import io

    from PIL import Image

    from conftest import write_images

    folder = tmp_path_factory.mktemp("ui-images")
    paretune.finetune({
        "model": {"name_or_path": str(tiny_vit_dir)},
        "task": {"type": "image-classification", "workers": 0},
        "data": {"train": str(write_images(folder / "train", 4, 1)),
                 "validation": str(write_images(folder / "validation", 2, 2))},
        "training": {"max_steps": 1, "batch_size": 8, "lr": 1e-3, "save_every": 10**6},
        "output": {"dir": str(folder / "runs" / "pictures")},
    })
    client = TestClient(create_app([folder / "runs"]))
    page = client.get("/playground?run=pictures").text
    assert 'type="file"' in page
    png = io.BytesIO()
    Image.new("RGB", (16, 16), (40, 40, 40)).save(png, format="PNG")
    headers = {"X-CSRF-Token": csrf_of(page)}
    answer = client.post("/api/predict/pictures", content=png.getvalue(), headers={**headers, "Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"]["label"] in ("dark", "light")
    refused = client.post("/api/predict/pictures", content=b"/etc/passwd", headers={**headers, "Content-Type": "image/png"})
    assert refused.status_code == 422 and "not an image" in refused.json()["detail"]
    assert client.post("/api/predict/pictures", json={"text": "/etc/passwd"}, headers=headers).status_code == 415


# --- keys --------------------------------------------------------------------------------------


def every_route(app) -> list[str]:
    paths = []
    for route in app.routes:
        path = getattr(route, "path", "")
        paths.append(path.replace("{run_id}", "cls-a").replace("{name}", "confusion.png")
                     .replace("{path}", "ui.js") + ("/ui.js" if path == "/static" else ""))
    return [p for p in paths if p not in ("/login",)]


def test_with_a_key_every_route_refuses_without_it(keyed):
    routes = every_route(keyed.app)
    assert {"/", "/run/cls-a/", "/api/curves/cls-a", "/frontier", "/static/ui.js", "/api/predict/cls-a"} <= set(routes)
    for path in routes:
        for method in ("GET", "POST"):
            answer = keyed.request(method, path, headers={"Accept": "application/json"})
            assert answer.status_code == 401, (method, path, answer.status_code)
    page = keyed.get("/run/cls-a/", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Frun%2Fcls-a%2F"
    assert keyed.get("/static/ui.js", headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
    assert keyed.get("/static/ui.js", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_login_sets_an_httponly_samesite_cookie_and_never_puts_the_key_in_a_url(keyed, caplog):
    caplog.set_level(logging.DEBUG)
    assert keyed.post("/login", data={"key": "wrong-key-0123456789", "next": "/"}).status_code == 401
    assert keyed.post("/login", data={"key": KEY}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert keyed.post("/login", data={"key": KEY}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    answer = keyed.post("/login", data={"key": KEY, "next": "//evil.example/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"  # no open redirect
    cookie = answer.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and KEY not in cookie
    session = re.search(rf"{SESSION_COOKIE}=([^;]+)", cookie).group(1)
    keyed.cookies.set(SESSION_COOKIE, session)
    try:
        assert keyed.get("/run/cls-a/").status_code == 200
        assert keyed.get("/api/curves/cls-a").status_code == 200
        assert keyed.post("/logout", headers={"Origin": "http://testserver"}).status_code == 303
        assert keyed.get("/").status_code == 401  # the session ended with the logout
    finally:
        keyed.cookies.clear()
    assert "value=\"" + KEY not in keyed.get("/login").text
    assert not [r for r in caplog.records if KEY in r.getMessage()]


def test_without_a_key_only_loopback_host_names_are_answered(root):
    """DNS rebinding: another site's domain resolving to 127.0.0.1 must not reach the runs."""
    app = create_app([root], allowed_hosts=["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://evil.example:8060").get("/").status_code == 400
    assert TestClient(app, base_url="http://127.0.0.1:8060").get("/").status_code == 200


def test_a_non_loopback_address_needs_a_key(root):
    with pytest.raises(ParetuneError, match="API keys"):
        check_options([root], "0.0.0.0", ())
    check_options([root], "0.0.0.0", (hash_key(KEY),))
    check_options([root], "127.0.0.1", ())
    with pytest.raises(ParetuneError, match="not a folder"):
        check_options([root / "missing"], "127.0.0.1", ())


# --- the file system: read only, nothing outside the folders given ---------------------------------


def test_no_file_outside_the_run_folders_is_served(tmp_path, root):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "secret.png").write_bytes(b"\x89PNG secret")
    (secret / "notes.md").write_text("TOP-SECRET-NOTES")
    outside_run = tmp_path / "outside-run"
    shutil.copytree(root / "cls-b", outside_run, ignore=shutil.ignore_patterns("model"))
    (outside_run / "config.yaml").write_text((outside_run / "config.yaml").read_text() + "# OUTSIDE-RUN\n")
    folder = tmp_path / "root"
    shutil.copytree(root / "cls-a", folder / "run", ignore=shutil.ignore_patterns("model"))
    os.symlink(secret / "secret.png", folder / "run" / "leak.png")  # a picture that points out
    (folder / "run" / "README.md").unlink()
    os.symlink(secret / "notes.md", folder / "run" / "README.md")  # a model card that points out
    os.symlink(outside_run, folder / "linked-run")  # a whole run folder that points out
    client = TestClient(create_app([folder]))
    assert [r["id"] for r in client.get("/api/runs").json()] == ["run"]
    assert client.get("/run/linked-run/").status_code == 404
    assert "TOP-SECRET-NOTES" not in client.get("/run/run/").text
    for path in ("/run/run/leak.png", "/run/run/config.yaml", "/run/run/..%2F..%2Fsecret%2Fsecret.png",
                 "/run/run/%2Fetc%2Fpasswd", "/run/%2Fetc/passwd", "/run/..%2Fsecret/secret.png",
                 "/static/..%2F..%2Fui%2Fapp.py", "/static/%2Fetc%2Fpasswd"):
        answer = client.get(path)
        assert answer.status_code == 404 and b"secret" not in answer.content and b"root:" not in answer.content, path
    assert client.get("/run/run/confusion.png").status_code in (200, 404)  # a real picture, if drawn


def test_a_model_card_cannot_run_script_in_the_page(tmp_path, root):
    run = tmp_path / "runs" / "card"
    shutil.copytree(root / "cls-b", run, ignore=shutil.ignore_patterns("model"))
    (run / "README.md").write_text("# card\n\n<script>alert(1)</script>\n\n[click](javascript:alert(2))\n")
    page = TestClient(create_app([tmp_path / "runs"])).get("/run/card/")
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert 'href="javascript:' not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_generative_runs_samples_are_shown_escaped_and_bounded(tmp_path, root):
    run = tmp_path / "runs" / "gen"
    shutil.copytree(root / "cls-b", run, ignore=shutil.ignore_patterns("model"))
    rows = [{"row": i, "prompt": f"question {i}", "reference": "yes", "answer": "yes" if i % 2 else "no",
             "match": bool(i % 2)} for i in range(1, 80)]
    rows[0]["prompt"] = "<script>alert(1)</script>"
    (run / "samples.jsonl").write_text("not json\n" + "".join(json.dumps(r) + "\n" for r in rows))
    page = TestClient(create_app([tmp_path / "runs"])).get("/run/gen/").text
    assert "Sample generations" in page and "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert len(re.findall(r'<tr class="(?:match|miss)">', page)) == 50  # the first 50, the bad line skipped
    assert "question 50" in page and "question 51" not in page and "25 of 50 match" in page
    assert "Sample generations" not in TestClient(create_app([root])).get("/run/cls-b/").text


def test_a_ner_runs_page_shows_its_entity_scores(tmp_path, root):
    run = tmp_path / "runs" / "ner"
    shutil.copytree(root / "cls-b", run, ignore=shutil.ignore_patterns("model"))
    scores = {"f1": 0.67, "precision": 1.0, "recall": 0.5, "per_type": {  # as evaluation/ner_metrics.py writes
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}}
    (run / "metrics.json").write_text(json.dumps({"validation": scores, "metric": "f1", "labels": []}))
    page = TestClient(create_app([tmp_path / "runs"])).get("/run/ner/").text
    table = page.split("<h3>per type</h3>")[1].split("</table>")[0]
    assert re.findall(r"<tr><th>(\w+)</th>", table) == ["LOC", "PER"] and "confusion matrix" not in page


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pages_never_write_or_delete_in_the_run_folders(client, root):
    before = tree(root)
    for path in ("/", "/run/cls-b/", "/api/curves/cls-b", "/frontier", "/compare?run=cls-a&run=cls-b",
                 "/sweeps", "/playground?run=cls-b"):
        assert client.get(path).status_code == 200, path
    assert tree(root) == before


def test_the_catalog_reads_sweep_json_by_its_sweep_name():
    from paretune.sweep.state import STATE_FILE
    from paretune.ui import catalog

    assert catalog.STATE_FILE == STATE_FILE


def test_config_is_parsed_once_while_unchanged_and_the_table_reads_its_sections_alike(root):
    catalog = Catalog([root])
    catalog.scan()
    path = root / "cls-a" / "config.yaml"
    assert catalog.parsed(path) is catalog.parsed(path)
    full = yaml.safe_load(path.read_text())
    assert full == catalog.parsed(path)
    names = ("model", "task", "method")
    assert yaml_sections(path.read_text(), names) == {k: full[k] for k in names}
    assert yaml_sections("{task: {type: ner}, data: {}}", names) == {"task": {"type": "ner"}}  # flow style


@pytest.mark.parametrize("text", [
    "model:\n  name_or_path: org/m-1\n  dtype: f\ntask:\n  type: ner\nmethod:\n  name: lora\n  r: 8\n",
    "model:\n  name_or_path: null\ntask:\n  type: ner\n", "model:\n  name_or_path: yes\n",
    "model:\n  name_or_path: '/a b'\n", "model:\n  name_or_path: a\n\n    b\ntask:\n  type: ner\n",
    "{task: {type: ner}, data: {}}", "model: {name_or_path: x}\ntask:\n  type: ner\n",
    "model:\n    sub:\n      name_or_path: inner\n    name_or_path: ~/m\ntask:\n  # c\n  type: gen # why\n",
    "model:\n  name_or_path: x\nmodel:\n  name_or_path: y\n", "data:\n  model: z\nmodel:\n  dtype: f\n",
    "model:\r\n  name_or_path: x\r\ntask:\r\n  type: ner\r\n"])
def test_the_tables_config_reader_agrees_with_yaml_without_parsing_it(text):
    from paretune.ui.catalog import SUMMARY_KEYS, config_summary

    def shown(config):
        return {section: (config.get(section) or {}).get(key) for section, key in SUMMARY_KEYS.items()}

    assert shown(config_summary(text)) == shown(yaml_sections(text, tuple(SUMMARY_KEYS)))


def test_a_config_swapped_for_a_link_out_after_its_stat_is_not_read(tmp_path):
    from paretune.ui.catalog import _stamp

    outside = tmp_path / "secret.yaml"
    outside.write_text("task:\n  type: stolen\n")
    config = tmp_path / "runs" / "run" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("task:\n  type: ner\n")
    catalog = Catalog([tmp_path / "runs"])
    stamp = _stamp(str(config))  # taken while it was a file; then swapped for a link out
    config.unlink()
    config.symlink_to(outside)
    assert catalog.parsed(config, stamp=stamp) is None
    assert catalog.parsed(config) is None

"""What a caller can make `paretune serve` do with what it sends: never open a file on the server,
and refuse ambiguous or loosely typed requests with the status the docs name.

Over HTTP an image is only ever bytes the client sent (a multipart upload or base64 JSON), never a
path on the server: the text route of an image run once handed client strings to the code that
opens image files (issue 28, item 3). Two apps in this process (FastAPI's TestClient), over tiny
runs made here: an image run (a tiny ViT) and a text run (a tiny BERT), one model pass each.
"""
from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path

import pytest
from conftest import sentiment_rows, write_csv, write_images
from PIL import Image

import paretune
from paretune.errors import ParetuneError

KEY = "inputs-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_IMAGES, TIMEOUT_S = 4, 5.0
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(color: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (color,) * 3).save(buffer, format="PNG")
    return buffer.getvalue()


def _client(run_dir: Path):
    from fastapi.testclient import TestClient

    from paretune.predictor import Predictor
    from paretune.serving.app import create_app
    from paretune.serving.auth import hash_key
    from paretune.serving.settings import ServeSettings

    settings = ServeSettings(api_key_hashes=(hash_key(KEY),), max_texts=MAX_IMAGES, max_wait_ms=0,
                             max_batch_size=2, request_timeout_s=TIMEOUT_S, model_processes=0)
    return TestClient(create_app(Predictor.load(run_dir), settings))


@pytest.fixture(scope="module")
def image_client(tmp_path_factory, tiny_vit_dir):
    folder = tmp_path_factory.mktemp("inputs-image-run")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_vit_dir)},
        "task": {"type": "image-classification", "workers": 0},
        "data": {"train": str(write_images(folder / "train", 4, 1)),
                 "validation": str(write_images(folder / "validation", 2, 2))},
        "training": {"max_steps": 1, "batch_size": 8, "save_every": 10**6},
        "output": {"dir": str(folder / "run")},
    })
    with _client(run.path) as client:
        yield client


@pytest.fixture(scope="module")
def text_client(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("inputs-text-run")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(16, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(4, seed=2))),
                 "max_length": 16, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 1, "batch_size": 16, "save_every": 10**6},
        "output": {"dir": str(folder / "run")},
    })
    with _client(run.path) as client:
        yield client


@pytest.fixture(scope="module")
def server_files(tmp_path_factory) -> dict[str, str]:
    """Paths on the server that a client might name: a PNG the model would classify, a FIFO that
    blocks whoever opens it, a missing file, a device that never ends, a secret, a relative path."""
    folder = tmp_path_factory.mktemp("server-files")
    png = folder / "on-server.png"
    png.write_bytes(_png())
    os.mkfifo(folder / "pipe.png")
    return {"shadow": "/etc/shadow", "png": str(png), "missing": str(folder / "missing.png"),
            "relative": os.path.relpath(png), "fifo": str(folder / "pipe.png"), "zero": "/dev/zero"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["shadow", "png", "missing", "relative", "fifo", "zero"])
def test_a_server_path_sent_to_the_text_route_of_an_image_run_is_never_opened(image_client, server_files, name):
    started = time.monotonic()
    answer = image_client.post("/v1/predict", json={"texts": [server_files[name]]}, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert "/v1/predict-images" in answer.json()["detail"]
    assert time.monotonic() - started < TIMEOUT_S / 2  # refused at the door, not timed out
    uploaded = image_client.post("/v1/predict-images", files=[("images", ("a.png", _png(), "image/png"))],
                                 headers=AUTH)
    assert uploaded.status_code == 200, uploaded.text  # the image thread is not stuck


def test_existing_missing_and_secret_paths_answer_alike(image_client, server_files):
    answers = {(r.status_code, r.content) for r in (
        image_client.post("/v1/predict", json={"texts": [server_files[name]]}, headers=AUTH)
        for name in ("shadow", "png", "missing", "relative"))}
    answers.add((lambda r: (r.status_code, r.content))(
        image_client.post("/v1/predict", json={"text": "a plain sentence"}, headers=AUTH)))
    assert len(answers) == 1, answers  # no file-existence oracle


def test_the_served_predictor_opens_no_files(image_client, server_files):
    predictor = image_client.app.state.batcher.predictor
    with pytest.raises(ParetuneError, match="not image bytes"):
        predictor.predict([server_files["png"]])
    assert predictor.predict([_png()])[0]["label"] in ("dark", "light")  # bytes still work


def test_a_path_in_a_text_field_of_an_upload_is_refused_naming_the_field(image_client, server_files):
    answer = image_client.post("/v1/predict-images", files=[("images", ("a.png", _png(), "image/png"))],
                               data={"image": server_files["png"]}, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "image"], answer.text
    assert "file field" in answer.text


def test_more_images_than_the_limit_get_422_as_documented(image_client):
    files = [("images", (f"{i}.png", _png(), "image/png")) for i in range(MAX_IMAGES + 1)]
    answer = image_client.post("/v1/predict-images", files=files, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "images"] and f"limit is {MAX_IMAGES}" in answer.text


@pytest.mark.parametrize("value", ["yes", "1", "on", ""])
def test_multipart_all_scores_must_be_true_or_false(image_client, value):
    files = [("images", ("a.png", _png(), "image/png"))]
    answer = image_client.post("/v1/predict-images", files=files, data={"all_scores": value}, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "all_scores"], answer.text


def test_multipart_all_scores_true_and_false_are_read(image_client):
    files = [("images", ("a.png", _png(), "image/png"))]
    scored = image_client.post("/v1/predict-images", files=files, data={"all_scores": "true"}, headers=AUTH)
    plain = image_client.post("/v1/predict-images", files=files, data={"all_scores": "false"}, headers=AUTH)
    assert "scores" in scored.json()["predictions"][0] and "scores" not in plain.json()["predictions"][0]


def test_duplicate_json_keys_get_400_naming_the_key(text_client, image_client):
    json_body = {"Content-Type": "application/json", **AUTH}
    texts = text_client.post("/v1/predict", content=b'{"texts": ["good"], "texts": ["bad"]}', headers=json_body)
    assert texts.status_code == 400 and "'texts'" in texts.json()["detail"], texts.text
    image = base64.b64encode(_png()).decode()
    images = image_client.post("/v1/predict-images", headers=json_body,
                               content=f'{{"image": "{image}", "all_scores": false, "all_scores": true}}')
    assert images.status_code == 400 and "'all_scores'" in images.json()["detail"], images.text
    fine = text_client.post("/v1/predict", content=b'{"texts": ["good"]}', headers=json_body)
    assert fine.status_code == 200, fine.text


def test_a_body_without_content_type_gets_415(text_client, image_client):
    texts = text_client.post("/v1/predict", content=b'{"texts": ["good"]}', headers=AUTH)
    assert texts.status_code == 415 and "application/json" in texts.text, texts.text
    image = base64.b64encode(_png()).decode()
    images = image_client.post("/v1/predict-images", content=f'{{"image": "{image}"}}', headers=AUTH)
    assert images.status_code == 415 and "multipart/form-data" in images.text, images.text


@pytest.mark.parametrize("method, path", [("POST", "/v1/predict/"), ("GET", "/healthz/"), ("GET", "/v1/model/")])
def test_a_trailing_slash_never_redirects_to_the_host_header(text_client, method, path):
    answer = text_client.request(method, path, json={"texts": ["good"]} if method == "POST" else None,
                                 headers={"Host": "evil.example", **AUTH}, follow_redirects=False)
    assert "evil.example" not in answer.headers.get("location", ""), answer.headers
    assert answer.status_code == 404, answer.status_code

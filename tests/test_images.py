"""Image classification: reading and checking images, training a tiny ViT end to end (metrics,
confusion picture, predict, serve), methods on image backbones, and the packaged EfficientNet-Lite0.

Images are written by the tests (16 px squares); models are tiny and built from a config. The train
and predict round trip of the registry lives in tests/test_task_plugins.py.
"""
from __future__ import annotations

import base64
import io
import json
import logging

import pytest
import torch
from conftest import write_images
from PIL import Image

import paretune
from paretune.data.images import ImagePreprocessor
from paretune.errors import DataError
from paretune.tasks.image_classification import ImageClassificationOptions, ImageClassificationTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(size=(16, 16), mode="RGB", color=0) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _options(**changes) -> ImageClassificationOptions:
    return ImageClassificationOptions(workers=0, **changes)


def test_every_bad_image_is_named_with_its_file_and_row(tmp_path):
    (tmp_path / "good.png").write_bytes(_png())
    (tmp_path / "text.png").write_text("not an image")
    noisy = io.BytesIO()
    Image.frombytes("RGB", (30, 30), bytes(range(256)) * 11).save(noisy, format="PNG")
    (tmp_path / "cut.png").write_bytes(noisy.getvalue()[: len(noisy.getvalue()) // 2])
    (tmp_path / "big.png").write_bytes(_png((40, 40)))
    Image.new("F", (8, 8)).save(tmp_path / "float.tif")
    rows = ["good.png", "missing.png", "text.png", "cut.png", "big.png", "float.tif"]
    data = tmp_path / "data.csv"
    data.write_text("image,label\n" + "".join(f"{r},{'ab'[i % 2]}\n" for i, r in enumerate(rows)))

    with pytest.raises(DataError) as failed:
        ImageClassificationTask.read_examples(data, _options(max_image_pixels=1000))
    problems = {p.row: p for p in failed.value.problems}
    assert set(problems) == {2, 3, 4, 5, 6}  # row 1 is fine
    for row, reason in [(2, "not found"), (3, "not an image"), (4, "truncated"), (5, "over the limit"),
                        (6, "mode F")]:
        assert problems[row].file == str(data) and problems[row].field == "image", problems[row]
        assert reason in problems[row].message, problems[row]


@pytest.mark.timeout(30)  # before the fix, opening the FIFO blocked for ever
def test_a_fifo_or_device_in_an_image_table_is_refused_with_its_file_and_row(tmp_path):
    import os

    (tmp_path / "good.png").write_bytes(_png())
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    data = tmp_path / "data.csv"
    data.write_text("image,label\ngood.png,a\npipe.png,b\n/dev/zero,a\nfolder.png,b\n")

    with pytest.raises(DataError) as failed:
        ImageClassificationTask.read_examples(data, _options())
    problems = {p.row: p for p in failed.value.problems}
    assert set(problems) == {2, 3, 4}
    for row, kind in [(2, "a FIFO (named pipe)"), (3, "a character device"), (4, "a folder")]:
        assert problems[row].file == str(data) and problems[row].field == "image", problems[row]
        assert f"is {kind}, not a regular file" in problems[row].message, problems[row]


@pytest.mark.timeout(30)
def test_a_fifo_as_the_list_of_images_to_predict_is_refused(tmp_path):
    import os

    os.mkfifo(tmp_path / "images.txt")
    with pytest.raises(DataError, match="not a regular file"):
        ImageClassificationTask.read_prediction_inputs(tmp_path / "images.txt", _options())


def test_a_file_too_big_to_be_an_image_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "good.png").write_bytes(_png())
    with open(tmp_path / "huge.png", "wb") as huge:  # sparse: 64 MiB by its size, nothing on disk
        huge.truncate(64 << 20)
    data = tmp_path / "data.csv"
    data.write_text("image,label\ngood.png,a\nhuge.png,b\n")

    with pytest.raises(DataError) as failed:  # 1,000 pixels take at most 8,000 bytes and 1 MiB of metadata
        ImageClassificationTask.read_examples(data, _options(max_image_pixels=1000))
    (problem,) = failed.value.problems
    assert problem.file == str(data) and problem.row == 2 and problem.field == "image"
    assert f"huge.png is {64 << 20:,} bytes" in problem.message and "max_image_pixels" in problem.message, problem


def test_bad_images_are_skipped_and_counted_when_asked(tmp_path, caplog):
    write_images(tmp_path / "train", 3)
    (tmp_path / "train" / "dark" / "broken.png").write_text("oops")
    with caplog.at_level(logging.WARNING, logger="paretune.data"):
        examples = ImageClassificationTask.read_examples(tmp_path / "train", _options(skip_bad_images=True))
    assert len(examples) == 6 and {ex.label for ex in examples} == {"dark", "light"}
    assert "skipped 1 of 7 images" in caplog.text and "broken.png" in caplog.text


def test_tables_hold_paths_relative_to_the_file_or_the_image_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_png())
    (tmp_path / "data.jsonl").write_text(json.dumps({"image": "imgs/a.png", "label": "x"}) + "\n")
    pq.write_table(pa.table({"image": [_png(), _png(mode="L")], "label": ["x", "y"]}), tmp_path / "data.parquet")

    (from_json,) = ImageClassificationTask.read_examples(tmp_path / "data.jsonl", _options())
    assert from_json.text == str(tmp_path / "imgs" / "a.png")
    from_parquet = ImageClassificationTask.read_examples(tmp_path / "data.parquet", _options())
    assert [type(ex.text) for ex in from_parquet] == [bytes, bytes]


def test_training_batches_are_augmented_and_evaluation_batches_are_not(tmp_path):
    write_images(tmp_path, 4)
    task = ImageClassificationTask(_options(image_size=24, mixup_alpha=0.4, cutmix_alpha=1.0), ["dark", "light"])
    examples = ImageClassificationTask.read_examples(tmp_path, task.config)
    encoded = task.encode(examples, task.parse(examples, "t", "label"), ImagePreprocessor(size=24), 0)
    plain = task.collate(encoded, [0, 1, 2], 0)
    assert plain["pixel_values"].shape == (3, 3, 24, 24) and plain["labels"].dtype == torch.int64
    assert torch.equal(plain["pixel_values"], task.collate(encoded, [0, 1, 2], 0)["pixel_values"])
    trained = task.train_collate(encoded, [0, 1, 2], 0)
    assert trained["labels"].shape == (3, 2) and torch.allclose(trained["labels"].sum(-1), torch.ones(3))
    assert task.loss(torch.zeros(3, 2), trained["labels"]).item() == pytest.approx(0.6931, abs=1e-3)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, tiny_vit_dir):
    folder = tmp_path_factory.mktemp("image-run")
    train, validation = write_images(folder / "train", 16, 1), write_images(folder / "validation", 6, 2)
    return paretune.finetune({
        "model": {"name_or_path": str(tiny_vit_dir)},
        "task": {"type": "image-classification", "workers": 0, "mixup_alpha": 0.2},
        "data": {"train": str(train), "validation": str(validation)},
        "training": {"max_steps": 4, "batch_size": 8, "lr": 1e-3, "save_every": 10**6},
        "output": {"dir": str(folder / "run")},
    }), validation


def test_a_run_reports_top5_per_class_and_draws_its_confusion_matrix(image_run):
    run, _ = image_run
    assert {"accuracy", "top5_accuracy", "per_class", "confusion_matrix"} <= set(run.validation)
    assert run.validation["top5_accuracy"] == 1.0  # two classes: both are in the top 5
    assert (run.path / "confusion_matrix.png").stat().st_size > 1000
    assert json.loads((run.path / "model" / "preprocessor_config.json").read_text())["size"]["height"] == 16


def test_eval_and_predict_commands_take_image_folders(image_run, tmp_path):
    from test_bad_input import run_in_process

    run, validation = image_run
    result = run_in_process(["eval", str(run.path), "--data", str(validation), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout[result.stdout.index("{"):])["accuracy"] == pytest.approx(run.validation["accuracy"])
    out = tmp_path / "predictions.jsonl"
    result = run_in_process(["predict", str(run.path), "--input", str(validation / "dark"), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["input"].endswith("dark-000.png") and lines[0]["label"] in ("dark", "light")


def test_the_server_takes_uploads_and_base64_behind_its_key(image_run):
    from fastapi.testclient import TestClient

    from paretune.predictor import Predictor
    from paretune.serving.app import create_app
    from paretune.serving.auth import hash_key
    from paretune.serving.settings import ServeSettings

    run, _ = image_run
    settings = ServeSettings(api_key_hashes=(hash_key("k" * 32),), max_image_pixels=50 * 50, max_wait_ms=0)
    key = {"Authorization": "Bearer " + "k" * 32}
    with TestClient(create_app(Predictor.load(run.path), settings)) as client:
        files = [("images", ("a.png", _png(), "image/png")), ("images", ("b.png", _png(color=255), "image/png"))]
        assert client.post("/v1/predict-images", files=files).status_code == 401
        uploaded = client.post("/v1/predict-images", files=files, headers=key)
        assert uploaded.status_code == 200 and len(uploaded.json()["predictions"]) == 2
        sent = client.post("/v1/predict-images", json={"image": base64.b64encode(_png()).decode()}, headers=key)
        assert sent.status_code == 200 and sent.json()["predictions"][0]["label"] in ("dark", "light")
        huge = client.post("/v1/predict-images", json={"images": [base64.b64encode(_png((60, 60))).decode()]},
                           headers=key)
        assert huge.status_code == 422 and "pixels" in huge.text
        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, format="TIFF")
        odd = client.post("/v1/predict-images", files=[("images", ("a.tif", gif.getvalue(), "image/tiff"))],
                          headers=key)
        assert odd.status_code == 422 and "TIFF is not served" in odd.text


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_lora_and_freeze_find_the_layers_of_image_backbones(tiny_vit_dir):
    from transformers import ResNetConfig, ResNetForImageClassification, ViTForImageClassification

    from paretune.methods import get_method
    from paretune.methods.base import MethodContext

    context = MethodContext("image-classification", 10)
    lora = get_method("lora")
    vit = lora.apply(ViTForImageClassification.from_pretrained(tiny_vit_dir), lora.options(), context)
    assert any("attention.q_proj.lora_A" in n for n in _trainable(vit))
    assert any(n.startswith("base_model.model.classifier") for n in _trainable(vit))

    resnet_config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2)
    resnet = lora.apply(ResNetForImageClassification(resnet_config), lora.options(), context)
    assert any("lora_A" in n and "convolution" in n for n in _trainable(resnet))
    freeze = get_method("freeze")
    frozen = freeze.apply(ResNetForImageClassification(resnet_config), freeze.options(trainable_layers=1), context)
    assert not any(n.startswith(("resnet.embedder", "resnet.encoder.stages.0")) for n in _trainable(frozen))
    assert any(n.startswith("resnet.encoder.stages.1") for n in _trainable(frozen))


def test_the_packaged_efficientnet_lite0_is_the_default_and_freezes_by_stage():
    from paretune.config.schema import ModelConfig
    from paretune.methods import get_method
    from paretune.methods.base import MethodContext
    from paretune.models import load_model, load_tokenizer

    options = _options(image_size=64)
    task = ImageClassificationTask(options, ["a", "b", "c"])
    model = load_model(ModelConfig(), task)
    assert type(model).__name__ == "EfficientNetLiteForImageClassification" and model.config.num_labels == 3
    preprocessor = load_tokenizer(ModelConfig(), task=options)
    assert (preprocessor.size, preprocessor.mean) == (64, (0.5, 0.5, 0.5))
    freeze = get_method("freeze")
    model = freeze.apply(model, freeze.options(trainable_layers=2), MethodContext("image-classification", 10))
    trainable = _trainable(model)
    assert "classifier.weight" in trainable and any(n.startswith("efficientnet_lite.stages.6") for n in trainable)
    assert not any(n.startswith(("efficientnet_lite.embeddings", "efficientnet_lite.stages.4")) for n in trainable)
    assert model(torch.zeros(2, 3, 64, 64)).logits.shape == (2, 3)


# --- multi-label images -------------------------------------------------------------------------
def test_multilabel_images_train_with_bce_and_mixup_and_predict_label_sets(tmp_path, tiny_vit_dir):
    from conftest import write_multilabel_images

    from paretune.predictor import Predictor
    from paretune.tasks.image_multilabel import ImageMultilabelOptions, ImageMultilabelTask

    task = ImageMultilabelTask(ImageMultilabelOptions(workers=0), ["dark", "light"])
    assert task.parse_label("dark, light").tolist() == [1.0, 1.0] and task.parse_label(["light"]).tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown label 'blue'"):
        task.parse_label("dark,blue")
    logits, targets = torch.tensor([[4.0, -4.0]]), torch.tensor([[1.0, 0.0]])
    assert task.loss(logits, targets) == pytest.approx(torch.nn.functional.softplus(torch.tensor(-4.0)).item(), rel=1e-5)

    train = write_multilabel_images(tmp_path / "train", 24, 1)
    validation = write_multilabel_images(tmp_path / "validation", 9, 2)
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_vit_dir)},
        "task": {"type": "image-multilabel", "workers": 0, "mixup_alpha": 0.2, "label_delimiter": ","},
        "data": {"train": str(train), "validation": str(validation)},
        "training": {"max_steps": 3, "batch_size": 8, "lr": 1e-3, "save_every": 10**6},
        "output": {"dir": str(tmp_path / "run")},
    })
    assert run.metrics["labels"] == ["dark", "light"]
    assert {"exact_match", "f1_micro", "hamming_loss"} <= set(run.validation)
    assert not (run.path / "confusion_matrix.png").exists()
    prediction = Predictor.load(run.path).predict([str(tmp_path / "validation" / "images" / "002.png")])[0]
    assert set(prediction) == {"labels"} and all(p["label"] in ("dark", "light") for p in prediction["labels"])


# --- compression and distillation of image runs -------------------------------------------------

def _no_bench():
    from paretune.compression.run_writer import BenchSettings

    return BenchSettings(enabled=False)


def test_image_runs_compress_to_int8_static_int8_onnx_pruned_and_16_bit_forms(image_run, tmp_path):
    from paretune.compression.run import compress_run

    run, validation = image_run
    for method, options in (("int8-dynamic", {}), ("onnx-int8", {"exporter": "torchscript"}),
                            ("onnx-int8-static", {"exporter": "torchscript", "calibration_rows": 16}),
                            ("prune-magnitude", {"sparsity": 0.5}), ("fp16", {})):
        out = compress_run(run.path, method, options, output=tmp_path / method, bench=_no_bench())
        metrics = json.loads((out / "metrics.json").read_text())
        assert 0 <= metrics["validation"]["accuracy"] <= 1, method  # scored at the run's own 16 px
        assert metrics["compression"]["method"] == method
        if method == "prune-magnitude":  # the ViT's Linear layers; its patch projection (a stem) is left
            assert metrics["compression"]["checks"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert json.loads((tmp_path / "int8-dynamic" / "metrics.json").read_text())["compression"]["settings"][
        "quantized_layers"] > 0
    static = json.loads((tmp_path / "onnx-int8-static" / "metrics.json").read_text())["compression"]
    assert static["settings"]["calibrated_on_rows"] == 16 and static["form"]["name"] == "onnx-int8"
    import onnx

    graph = onnx.load(str(tmp_path / "onnx-int8-static" / "model" / "model.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.graph.node}


def test_a_convolutional_backbone_gets_clear_answers_from_compression(tmp_path):
    """A conv net: int8-dynamic (Linear only) and drop-layers (stages of different widths) refuse
    with the reason; magnitude pruning takes its convolutions, not its stem."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from paretune.compression import get_method
    from paretune.compression.drop_layers import keep_layers
    from paretune.compression.prune_magnitude import prunable
    from paretune.errors import ParetuneError

    torch.manual_seed(0)
    resnet = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                       num_labels=2))
    int8 = get_method("int8-dynamic")
    with pytest.raises(ParetuneError, match="has none .a convolutional network.; use --method onnx-int8"):
        int8.apply(resnet, int8.options(), None)
    with pytest.raises(ParetuneError, match="differ in shape"):
        keep_layers(resnet, [0])
    convs = {id(m) for m, _ in prunable(resnet)}
    assert id(resnet.resnet.encoder.stages[1].layers[0].layer[0].convolution) in convs
    assert id(resnet.resnet.embedder.embedder.convolution) not in convs
    assert not any(isinstance(m, torch.nn.Linear) for m, _ in prunable(resnet))  # the head stays whole


def test_an_onnx_int8_image_run_serves_uploads_and_base64_behind_its_key(image_run, tmp_path):
    from fastapi.testclient import TestClient

    from paretune.compression.run import compress_run
    from paretune.predictor import Predictor
    from paretune.serving.app import create_app
    from paretune.serving.auth import hash_key
    from paretune.serving.settings import ServeSettings

    run, _ = image_run
    out = compress_run(run.path, "onnx-int8", {"exporter": "torchscript"}, output=tmp_path / "onnx8",
                       bench=_no_bench())
    predictor = Predictor.load(out)
    assert type(predictor.model).__name__ == "OrtModel"
    key = {"Authorization": "Bearer " + "k" * 32}
    settings = ServeSettings(api_key_hashes=(hash_key("k" * 32),), max_wait_ms=0)
    with TestClient(create_app(predictor, settings)) as client:
        files = [("images", ("a.png", _png(), "image/png"))]
        assert client.post("/v1/predict-images", files=files).status_code == 401
        uploaded = client.post("/v1/predict-images", files=files, headers=key)
        assert uploaded.status_code == 200 and uploaded.json()["predictions"][0]["label"] in ("dark", "light")
        sent = client.post("/v1/predict-images", json={"images": [base64.b64encode(_png(color=255)).decode()]},
                           headers=key)
        assert sent.status_code == 200 and sent.json()["predictions"][0]["label"] in ("dark", "light")


def test_an_image_run_distills_into_a_smaller_backbone_with_the_same_preprocessing(image_run, tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    from paretune.distillation.options import DistillOptions
    from paretune.distillation.run import distill_run
    from paretune.errors import ParetuneError

    run, _ = image_run
    torch.manual_seed(0)
    small = ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, num_labels=2)
    ViTForImageClassification(small).save_pretrained(tmp_path / "small")
    out = distill_run(run.path, str(tmp_path / "small"), DistillOptions(epochs=1), output=tmp_path / "student",
                      bench=_no_bench())
    checks = json.loads((out / "metrics.json").read_text())["compression"]["checks"]
    assert checks["param_ratio"] < 0.5 and "kl_to_teacher_after" in checks
    ViTForImageClassification(small.__class__(**{**small.to_dict(), "image_size": 32})).save_pretrained(
        tmp_path / "other-size")
    with pytest.raises(ParetuneError, match="reads its inputs differently"):
        distill_run(run.path, str(tmp_path / "other-size"), output=tmp_path / "refused", bench=_no_bench())


def test_the_model_card_of_an_image_run_shows_the_image_path_and_its_snippet_runs(image_run, tmp_path,
                                                                                   monkeypatch):
    run, validation = image_run
    card = (run.path / "README.md").read_text()
    assert "AutoTokenizer" not in card and "some text" not in card
    assert f"paretune predict {run.path.name} --input photos/" in card and "/v1/predict-images" in card
    snippet = card.split("With plain transformers")[1].split("```python\n")[1].split("```")[0]
    assert "AutoImageProcessor" in snippet
    monkeypatch.chdir(run.path.parent)
    (run.path.parent / "photo.jpg").write_bytes((validation / "light" / "light-000.png").read_bytes())
    exec(snippet.replace("model.config.id2label[", "answer = model.config.id2label["), scope := {})
    assert scope["answer"] == paretune.Predictor.load(run.path).predict([str(validation / "light" / "light-000.png")])[0]["label"]

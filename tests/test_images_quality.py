"""Image quality on real data, CI-sized: the packaged ImageNet EfficientNet-Lite0 fine-tuned on a
small Fashion-MNIST slice (needs the Debian package dataset-fashion-mnist; skipped without it).

480 test-set images (the first ones: every class about equally) written as PNGs, a folder per
class, one epoch at 48 px training all but the stem (batch 16, lr 2e-3), scored on 300 other test-set
images. Measured: accuracy 0.553 (chance 0.1); 36 s of training on the shared machine (load
average ~9.5 on 2 cores), about a fifth of that idle. The full figure (0.88 on 10,000 images)
is bench/images_fashion.py's, recorded in bench/RESULTS.md.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import paretune

pytestmark = [pytest.mark.quality, pytest.mark.usefixtures("one_torch_thread")]

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _write_pngs(root: Path, images: np.ndarray, labels: np.ndarray, rows: range) -> Path:
    from PIL import Image

    for i in rows:
        folder = root / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], mode="L").save(folder / f"{i}.png")
    return root


def test_efficientnet_lite0_learns_a_fashion_mnist_slice_well_above_chance(tmp_path):
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not found at {FASHION} (apt-get install dataset-fashion-mnist)")
    images, labels = _idx(FASHION / "t10k-images-idx3-ubyte.gz"), _idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    run = paretune.finetune({
        "task": {"type": "image-classification", "image_size": 48, "workers": 0, "trivial_augment": False,
                 "crop_scale": [0.85, 1.0]},
        "data": {"train": str(_write_pngs(tmp_path / "train", images, labels, range(480))),
                 "validation": str(_write_pngs(tmp_path / "validation", images, labels, range(5000, 5300)))},
        "method": {"name": "freeze", "trainable_layers": 7},  # all 7 stages and the head; the stem stays
        "training": {"epochs": 1, "batch_size": 16, "lr": 2e-3, "save_every": 10**6, "eval_every": 10**6},
        "output": {"dir": str(tmp_path / "run")},
    })
    assert run.metrics["labels"] == [str(i) for i in range(10)]
    assert run.validation["accuracy"] >= 0.4  # chance is 0.1; measured 0.553
    card = (run.path / "README.md").read_text()
    assert "import paretune.backbones.efficientnet_lite" in card and "AutoImageProcessor" in card

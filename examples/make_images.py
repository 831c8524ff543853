"""Write the small synthetic image set examples/images.yaml trains on: simple shapes, one folder each.

    python examples/make_images.py            # into examples/data/shapes/, next to this script
    python examples/make_images.py --out DIR  # somewhere else

Each image is one filled shape (circle, square, triangle or cross) of random size, position,
colour and background, drawn with PIL from `random.Random(SEED)`, so two runs write the same files.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

SEED = 20261130
SIZE = 48
COUNTS = {"train": 40, "validation": 12}  # images per class
SHAPES = ("circle", "square", "triangle", "cross")


def draw(shape: str, rng: random.Random) -> Image.Image:
    background = tuple(rng.randrange(0, 256) for _ in range(3))
    colour = tuple((c + rng.randrange(96, 160)) % 256 for c in background)  # always far from the background
    image = Image.new("RGB", (SIZE, SIZE), background)
    pen = ImageDraw.Draw(image)
    half = rng.randrange(8, 18)
    cx, cy = rng.randrange(half, SIZE - half), rng.randrange(half, SIZE - half)
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    elif shape == "triangle":
        pen.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    else:
        width = max(2, half // 3)
        pen.rectangle((cx - half, cy - width, cx + half, cy + width), fill=colour)
        pen.rectangle((cx - width, cy - half, cx + width, cy + half), fill=colour)
    return image


def write(out: Path) -> None:
    rng = random.Random(SEED)
    for split, count in COUNTS.items():
        for shape in SHAPES:
            folder = out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw(shape, rng).save(folder / f"{shape}-{i:03d}.png", optimize=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "shapes")
    write(parser.parse_args().out)

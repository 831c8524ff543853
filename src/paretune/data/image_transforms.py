"""Image preprocessing and training augmentation, on PIL images and torch tensors.

torchvision would be the library for this, but no torchvision build fits the pinned CPU torch
2.13.0 (0.29 needs torch 2.14; 0.28's PyPI wheel fails to load its operators against the CPU
build), so the few transforms users expect are written here: random resized crop, horizontal
flip, TrivialAugment (Müller & Hutter 2021: one random op at a random strength per image),
mixup and cutmix. Evaluation only resizes and normalizes.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

BILINEAR = Image.Resampling.BILINEAR


def to_tensor(image: Image.Image, mean, std) -> torch.Tensor:
    """[3, H, W] float32, normalized."""
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
    return (array - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def resize(image: Image.Image, size: int) -> Image.Image:
    return image if image.size == (size, size) else image.resize((size, size), BILINEAR)


def random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float], rng: random.Random,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """A crop of random area (a `scale` fraction) and aspect ratio, resized to size x size."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.resize((size, size), BILINEAR, box=(left, top, left + w, top + h))
    return resize(image, size)  # no crop fitted: the whole image, as torchvision falls back


def _affine(image: Image.Image, matrix: tuple) -> Image.Image:
    return image.transform(image.size, Image.Transform.AFFINE, matrix, BILINEAR, fillcolor=(128, 128, 128))


# TrivialAugmentWide's ops and ranges; `m` runs from 0 to 1 over the strength bins.
_OPS = {
    "identity": lambda im, m, s: im,
    "shear_x": lambda im, m, s: _affine(im, (1, s * 0.99 * m, 0, 0, 1, 0)),
    "shear_y": lambda im, m, s: _affine(im, (1, 0, 0, s * 0.99 * m, 1, 0)),
    "translate_x": lambda im, m, s: _affine(im, (1, 0, s * 32 / 224 * im.size[0] * m, 0, 1, 0)),
    "translate_y": lambda im, m, s: _affine(im, (1, 0, 0, 0, 1, s * 32 / 224 * im.size[1] * m)),
    "rotate": lambda im, m, s: im.rotate(s * 135 * m, BILINEAR, fillcolor=(128, 128, 128)),
    "brightness": lambda im, m, s: ImageEnhance.Brightness(im).enhance(1 + s * 0.99 * m),
    "color": lambda im, m, s: ImageEnhance.Color(im).enhance(1 + s * 0.99 * m),
    "contrast": lambda im, m, s: ImageEnhance.Contrast(im).enhance(1 + s * 0.99 * m),
    "sharpness": lambda im, m, s: ImageEnhance.Sharpness(im).enhance(1 + s * 0.99 * m),
    "posterize": lambda im, m, s: ImageOps.posterize(im, 8 - int(6 * m)),
    "solarize": lambda im, m, s: ImageOps.solarize(im, int(255 * (1 - m))),
    "autocontrast": lambda im, m, s: ImageOps.autocontrast(im),
    "equalize": lambda im, m, s: ImageOps.equalize(im),
}
_BINS = 31


def trivial_augment(image: Image.Image, rng: random.Random) -> Image.Image:
    op = _OPS[rng.choice(list(_OPS))]
    strength = rng.randrange(_BINS) / (_BINS - 1)
    return op(image, strength, rng.choice((-1, 1)))


def mix(pixels: torch.Tensor, targets: torch.Tensor, num_labels: int, mixup_alpha: float, cutmix_alpha: float,
        rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (blend two images) or cutmix (paste a box of one into another), one per batch, with
    soft targets weighted by how much of each image is left. Returns (pixels, [B, C] targets)."""
    # Class ids become one-hot rows; multi-label rows (0/1 per label) are mixed as they are.
    soft = targets.float() if targets.is_floating_point() else torch.nn.functional.one_hot(targets, num_labels).float()
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < 0.5)
    lam = rng.betavariate(*(2 * [cutmix_alpha if use_cutmix else mixup_alpha]))
    order = torch.arange(len(pixels) - 1, -1, -1)  # each image mixes with its mirror in the batch
    if use_cutmix:
        height, width = pixels.shape[-2:]
        cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
        cy, cx = rng.randrange(height), rng.randrange(width)
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        pixels = pixels.clone()
        pixels[..., top:bottom, left:right] = pixels[order][..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (height * width)
    else:
        pixels = lam * pixels + (1 - lam) * pixels[order]
    return pixels, lam * soft + (1 - lam) * soft[order]

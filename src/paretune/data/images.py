"""Reading and checking images: where they come from, whether they decode, how they are preprocessed.

An image example's `text` is where its image is: a path (str) or the encoded file itself (bytes).
Every image is opened and fully decoded once while the data is read, before any model is loaded,
so a missing file, one that is no regular file (a FIFO, a device), one too big to be an image
(checked before it is read), a file that is no image, a truncated one, one too large (a
decompression bomb) or one in a mode that has no RGB meaning fails with its file and row, or is
skipped and counted when the user asks. Training then decodes them again in DataLoader workers (image_transforms.py).
"""
from __future__ import annotations

import io
import itertools
import json
import logging
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

log = logging.getLogger("paretune.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Modes that have an RGB meaning. 32-bit integer / float images (I, F: depth maps, scientific data)
# would be clipped to 8 bits without a word: the user must convert them knowingly.
RGB_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La"})
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PREPROCESSOR_FILE = "preprocessor_config.json"


class ImageProblem(ValueError):
    """Why one image cannot be used (the caller adds file and row)."""


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image of `max_pixels` pixels can need: 8 bytes a pixel (16-bit RGBA, stored
    uncompressed) and 1 MiB of headers and metadata. A larger file is no image we would read."""
    return 8 * max_pixels + (1 << 20)


def read_image_bytes(source: str | bytes, max_bytes: int | None = None) -> bytes:
    """The bytes of an image file, opened only if it is a regular file and only up to `max_bytes`.

    A FIFO blocks whoever opens it until a writer comes, and /dev/zero never ends: the file is
    opened without blocking and checked (fstat of what was opened, so it cannot be swapped between
    check and read) before a byte is read, and its size is checked before it is read whole.
    """
    if isinstance(source, bytes):
        return source
    try:
        descriptor = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageProblem(f"image file not found: {source}") from None
    except OSError as err:
        raise ImageProblem(f"cannot read image file {source}: {err.strerror or err}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise ImageProblem(f"{source} is {_kind(status.st_mode)}, not a regular file: images are read "
                               "only from regular files")
        if max_bytes is not None and status.st_size > max_bytes:
            raise ImageProblem(f"{source} is {status.st_size:,} bytes, more than an image within "
                               f"task.max_image_pixels can take ({max_bytes:,} bytes): is it an image?")
        with os.fdopen(descriptor, "rb", closefd=False) as file:  # closed below, on every path
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except OSError as err:
        raise ImageProblem(f"cannot read image file {source}: {err.strerror or err}") from None
    finally:
        os.close(descriptor)
    if max_bytes is not None and len(data) > max_bytes:  # it grew after the check
        raise ImageProblem(f"{source} is more than {max_bytes:,} bytes: is it an image?")
    return data


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def decode(source: str | bytes, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """The image as RGB, or ImageProblem saying why not. `draft_size` lets JPEG decode at a reduced
    scale (several times faster) when the image will be shrunk to about that size anyway."""
    data = read_image_bytes(source, max_file_bytes(max_pixels))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageProblem(f"image is too large to decode safely ({err})") from None
        except Exception as err:  # PIL raises UnidentifiedImageError, SyntaxError, ValueError, ...
            raise ImageProblem(f"not an image PIL can read ({type(err).__name__}: {err})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageProblem(f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                           f"{max_pixels:,} (task.max_image_pixels)")
    if image.mode not in RGB_MODES:
        raise ImageProblem(f"image mode {image.mode} has no RGB meaning (8-bit modes such as L, RGB, RGBA, P "
                           "are read); convert it to 8-bit first")
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.load()
    except Exception as err:  # truncated files: OSError; broken codecs: others
        raise ImageProblem(f"image data is broken or truncated ({type(err).__name__}: {err})") from None
    if image.mode in ("RGBA", "LA", "PA", "P") and "transparency" in image.info or image.mode in ("RGBA", "LA"):
        # Transparent pixels over white, as viewers show them (converting drops alpha to black).
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def folder_examples(root: Path) -> list[tuple[str, str]]:
    """(image path, class name) for `root/<class>/<image>`, in a stable order that takes the classes
    in turn, so the first N rows (data.max_train_rows) hold every class, not the first few."""
    per_class = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = [p for p in sorted(class_dir.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        per_class.append([(str(path), class_dir.name) for path in images])
    return [pair for turn in itertools.zip_longest(*per_class) for pair in turn if pair is not None]


def list_images(path: Path) -> list[str]:
    """Images to predict: every image under a folder (sorted), or the lines of a list file."""
    if path.is_dir():
        return [str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [str((path.parent / line)) for line in lines if line and not line.startswith("#")]


@dataclass
class ImagePreprocessor:
    """What the backbone expects: square size and per-channel mean and std of [0, 1] pixels.

    It stands where a text model's tokenizer stands (the runner saves it with the model; the
    Predictor loads it back), and is written as a ViTImageProcessor config (resize to size x size,
    rescale, normalize): the same preprocessing evaluation uses, readable by transformers.
    """

    size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    pad_token_id: int = 0  # images are never padded; the loop still passes a pad id through
    eos_token_id: int | None = field(default=None, repr=False)

    def get_vocab(self) -> dict[str, Any]:  # what the encoding cache fingerprints
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std)}

    def save_pretrained(self, folder: str | Path) -> None:
        settings = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "resample": 2,
                    "size": {"height": self.size, "width": self.size}, "do_rescale": True,
                    "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(self.mean),
                    "image_std": list(self.std)}
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / PREPROCESSOR_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_folder(cls, folder: str | Path, size: int | None = None) -> "ImagePreprocessor":
        """From a checkpoint's preprocessor_config.json, else its config.json's image_size and
        ImageNet statistics (models built from a config have no preprocessor file)."""
        folder = Path(folder)
        settings = _read_json(folder / PREPROCESSOR_FILE)
        model = _read_json(folder / "config.json")
        mean = settings.get("image_mean") or model.get("image_mean") or IMAGENET_MEAN
        std = settings.get("image_std") or model.get("image_std") or IMAGENET_STD
        found = _size(settings.get("crop_size")) or _size(settings.get("size")) or model.get("image_size")
        if isinstance(found, (list, tuple)):
            found = found[0]
        return cls(size=int(size or found or 224), mean=tuple(mean), std=tuple(std))


def _size(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return value.get("height") or value.get("shortest_edge")
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}

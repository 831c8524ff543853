"""Single-label image classification: a pretrained vision backbone with a fresh head.

Data is a folder per class (`train/cat/*.jpg`) or a CSV/JSONL/Parquet file whose `image` column
holds a path (relative to the file) or the image file's bytes, and whose `label` column holds the
class. Images are checked while the data is read (data/images.py); an example then carries where
its image is, and batches decode it, in DataLoader workers, with training augmentation in
`train_collate` only (data/image_transforms.py): evaluation sees resize and normalize alone.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.backbones import DEFAULT_IMAGE_BACKBONE, packaged_preprocessing, register_backbones
from paretune.data import image_transforms as tf
from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.data.image_reading import check_images, read_image_examples, read_prediction_inputs
from paretune.data.images import ImagePreprocessor, ImageProblem, decode
from paretune.errors import DataError, ParetuneError
from paretune.evaluation.classification_metrics import classification_metrics
from paretune.tasks.base import Task, TaskOptions
from paretune.tasks.classification import ClassificationTask

log = logging.getLogger("paretune")


class ImageClassificationOptions(TaskOptions):
    type: Literal["image-classification"] = "image-classification"
    image_column: str = Field("image", description="Column holding the image path (relative to the file) or bytes.")
    image_size: int | None = Field(None, ge=8, description="Square input size; default: the backbone's own.")
    skip_bad_images: bool = Field(False, description="Skip (and count) unreadable images instead of failing.")
    max_image_pixels: int = Field(50_000_000, ge=1, description="Larger images are refused (decompression bombs).")
    crop_scale: tuple[float, float] = Field((0.25, 1.0), description="Random resized crop: area fraction range.")
    hflip: bool = Field(True, description="Random horizontal flips in training (off for text, digits).")
    trivial_augment: bool = Field(True, description="TrivialAugment: one random op per training image.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Cross-entropy label smoothing.")
    mixup_alpha: float = Field(0.0, ge=0, description="Mixup Beta(alpha, alpha); 0 = off.")
    cutmix_alpha: float = Field(0.0, ge=0, description="CutMix Beta(alpha, alpha); 0 = off.")
    workers: int | None = Field(None, ge=0, description="DataLoader workers decoding images; default: cores - 1.")
    channels_last: bool = Field(True, description="Batches in channels-last memory order (faster convolutions).")


class ImageClassificationTask(Task):
    name = "image-classification"
    options = ImageClassificationOptions
    config: ImageClassificationOptions
    auto_model = "AutoModelForImageClassification"
    default_model = DEFAULT_IMAGE_BACKBONE
    default_metric = "accuracy"
    metric_names = ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_micro",
                    "recall_micro", "f1_micro", "precision_weighted", "recall_weighted", "f1_weighted", "support")
    model_inputs = ("pixel_values",)
    min_labels = 2
    problem_type = "single_label_classification"
    peft_task_type = None  # peft's plain PeftModel: the forward passes pixel_values through
    batch_by_tokens = False  # every image is one unit of work: fixed-size batches
    confusion_picture = True
    takes_images = True
    cache_encoding = False  # encoding only records where each image is; images change under a path
    read_logits = "model.config.id2label[logits.argmax(-1).item()]  # the predicted class"

    def __init__(self, config: ImageClassificationOptions, label_names: list[str]):
        super().__init__(config, label_names)
        register_backbones()  # before any model of this task is loaded from a folder
        self.preprocessor = ImagePreprocessor(size=config.image_size or 224)  # set by load_preprocessor
        workers = config.workers if config.workers is not None else min(4, (os.cpu_count() or 1) - 1)
        self.loader_workers = max(0, workers)

    # --- reading, labels, preprocessing ---------------------------------------------------
    @classmethod
    def read_examples(cls, path, config: ImageClassificationOptions, **reader_kwargs) -> list[Example]:
        return read_image_examples(Path(path), config, **reader_kwargs)

    @classmethod
    def read_prediction_inputs(cls, path, config: ImageClassificationOptions) -> list[Example]:
        return read_prediction_inputs(Path(path), config)

    def sample_input(self) -> bytes:
        """A small grey PNG, to warm a served model up."""
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (128, 128, 128)).save(buffer, format="PNG")
        return buffer.getvalue()

    @classmethod
    def load_preprocessor(cls, source: str, config: ImageClassificationOptions, **_) -> ImagePreprocessor:
        settings = packaged_preprocessing(source)
        if settings is not None:
            size, mean, std = settings
            return ImagePreprocessor(size=config.image_size or size, mean=mean, std=std)
        if Path(source).is_dir():
            return ImagePreprocessor.from_folder(source, config.image_size)
        from transformers import AutoImageProcessor  # a hub id: its processor says size, mean, std

        try:
            hub = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise ParetuneError(f"cannot load the image preprocessing of '{source}': {err}") from None
        size = getattr(hub, "crop_size", None) or getattr(hub, "size", None) or {}
        found = size.get("height") or size.get("shortest_edge") or 224
        return ImagePreprocessor(config.image_size or found, tuple(hub.image_mean), tuple(hub.image_std))

    # Labels are read as text classification reads them (configured list, or sorted as found).
    infer_labels = classmethod(ClassificationTask.infer_labels.__func__)
    parse_label = ClassificationTask.parse_label

    def use_preprocessor(self, preprocessor) -> None:
        if isinstance(preprocessor, ImagePreprocessor):
            self.preprocessor = preprocessor

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        self.use_preprocessor(tokenizer)
        if targets is None:  # prediction input was not read through read_examples: check it now
            bad = check_images(examples, "input", self.config, self.preprocessor.size)
            if bad:
                raise DataError(bad)
        sources = [ex.text.encode("utf-8") if isinstance(ex.text, str) else bytes(ex.text) for ex in examples]
        labels = None if targets is None else self.stack_targets(targets)
        return Encoded(
            labels=labels, size_key="row",  # one unit per image: batches and cost count images
            image=[np.frombuffer(s, dtype=np.uint8) for s in sources],
            image_is_path=[np.array([isinstance(ex.text, str)], dtype=np.int8) for ex in examples],
            row=[np.array([ex.row], dtype=np.int64) for ex in examples],
        )

    def stack_targets(self, targets: list[Any]) -> np.ndarray:
        return np.asarray(targets, dtype=np.int64)  # class ids

    # --- batches: decoded here, in the loader's workers -------------------------------------
    def _image(self, encoded: Encoded, i: int, size: int):
        raw = encoded.image[i].tobytes()
        source = raw.decode("utf-8") if encoded.image_is_path[i][0] else raw
        try:
            return decode(source, self.config.max_image_pixels, draft_size=size)
        except ImageProblem as err:  # the file changed since it was checked
            where = source if isinstance(source, str) else f"row {int(encoded.row[i][0])}"
            raise ParetuneError(f"{where}: {err}") from None

    def _batch(self, pixels: list[torch.Tensor], encoded: Encoded, indices: list[int]) -> dict[str, torch.Tensor]:
        stacked = torch.stack(pixels)
        if self.config.channels_last:
            stacked = stacked.contiguous(memory_format=torch.channels_last)
        batch = {"pixel_values": stacked, "index": torch.as_tensor(indices, dtype=torch.int64)}
        if encoded.labels is not None:
            batch["labels"] = torch.from_numpy(encoded.labels[indices])
        return batch

    def collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        p = self.preprocessor
        pixels = [tf.to_tensor(tf.resize(self._image(encoded, i, p.size), p.size), p.mean, p.std) for i in indices]
        return self._batch(pixels, encoded, indices)

    def train_collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        p, c, rng = self.preprocessor, self.config, random  # seeded per worker by the DataLoader
        pixels = []
        for i in indices:
            image = tf.random_resized_crop(self._image(encoded, i, p.size), p.size, c.crop_scale, rng)
            if c.hflip and rng.random() < 0.5:
                image = image.transpose(tf.Image.Transpose.FLIP_LEFT_RIGHT)
            if c.trivial_augment:
                image = tf.trivial_augment(image, rng)
            pixels.append(tf.to_tensor(image, p.mean, p.std))
        batch = self._batch(pixels, encoded, indices)
        if (c.mixup_alpha > 0 or c.cutmix_alpha > 0) and "labels" in batch:
            batch["pixel_values"], batch["labels"] = tf.mix(batch["pixel_values"], batch["labels"],
                                                            len(self.label_names), c.mixup_alpha, c.cutmix_alpha, rng)
        return batch

    # --- head, loss, metrics ---------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        # An ImageNet checkpoint has a 1000-way head: it is replaced, not an error.
        return {**super().model_kwargs(), "ignore_mismatched_sizes": True}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        smoothing = self.config.label_smoothing
        if labels.is_floating_point():  # mixed soft targets (mixup / cutmix)
            soft = labels * (1 - smoothing) + smoothing / logits.shape[-1]
            return -(soft * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
        return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)

    def outputs(self, logits, batch) -> list[np.ndarray]:
        return list(torch.softmax(logits.float(), dim=-1).cpu().numpy())

    def metrics(self, outputs, targets) -> dict[str, Any]:
        predicted = [int(np.argmax(p)) for p in outputs]
        metrics = classification_metrics(list(targets), predicted, self.label_names)
        k = min(5, len(self.label_names))
        top = [set(np.argsort(-p)[:k].tolist()) for p in outputs]
        metrics["top5_accuracy"] = float(np.mean([t in s for t, s in zip(targets, top)])) if top else 0.0
        return metrics

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        order = np.argsort(-output)
        result: dict[str, Any] = {"label": self.label_names[int(order[0])], "score": float(output[order[0]])}
        result["top5"] = [{"label": self.label_names[int(i)], "score": float(output[i])} for i in order[:5]]
        if all_scores:
            result["scores"] = {name: float(p) for name, p in zip(self.label_names, output)}
        return result

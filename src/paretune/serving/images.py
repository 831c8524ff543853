"""POST /v1/predict-images: images in (multipart upload or base64 JSON), one prediction each out.

Added to the app only for a model whose task takes images. It is the text route's twin and as thin:
the same key check, rate limit and micro-batcher, then the same Predictor. What it adds are the
image limits, checked on each image's header before any pixel is decoded: images per request
(--max-texts), the body size (--max-body-bytes, which uploads usually need raised), the pixel
count (--max-image-pixels) and the format (JPEG, PNG, WebP, GIF, BMP). Every problem answers 422
naming the image by its position.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
from typing import Any, Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paretune.serving.batcher import Overloaded
from paretune.serving.limits import retry_after_header

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    images: list[str] | None = Field(None, description="Images as base64 strings (a data: URL prefix is allowed).")
    image: str | None = Field(None, description="One base64 image (instead of images).")
    all_scores: bool = Field(False, description="Also return every label's score.")


def image_problems(images: list[bytes], max_images: int, max_pixels: int) -> list[dict[str, Any]]:
    """Why these images cannot be served, as 422 details (empty list: fine). Headers only."""
    if not images:
        return [{"loc": ["body", "images"], "msg": "give at least one image"}]
    if len(images) > max_images:
        return [{"loc": ["body", "images"], "msg": f"{len(images)} images in one request; the limit is "
                 f"{max_images}: split the request"}]
    problems = []
    for i, data in enumerate(images):
        try:
            with Image.open(io.BytesIO(data)) as image:
                kind, (width, height) = image.format, image.size
        except Exception:  # PIL raises several kinds for data that is no image
            problems.append({"loc": ["body", "images", i], "msg": "not an image (JPEG, PNG, WebP, GIF or BMP)"})
            continue
        if kind not in FORMATS:
            problems.append({"loc": ["body", "images", i], "msg": f"format {kind} is not served; send one of "
                             f"{', '.join(FORMATS)}"})
        elif width * height > max_pixels:
            problems.append({"loc": ["body", "images", i], "msg": f"image is {width}x{height} = {width * height:,} "
                             f"pixels; the limit is {max_pixels:,}"})
    return problems


def _decode_base64(items: list[str]) -> tuple[list[bytes], list[dict[str, Any]]]:
    images, problems = [], []
    for i, item in enumerate(items):
        try:
            images.append(base64.b64decode(item.partition(",")[2] if item.startswith("data:") else item,
                                           validate=True))
        except (binascii.Error, ValueError):
            problems.append({"loc": ["body", "images", i], "msg": "not valid base64"})
    return images, problems


async def _read(request: Request, max_images: int, max_bytes: int) -> tuple[list[bytes], bool]:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        form = await request.form(max_files=max_images, max_fields=max_images + 4, max_part_size=max_bytes)
        uploads = [value for _, value in form.multi_items() if hasattr(value, "read")]
        images = [await upload.read() for upload in uploads]
        return images, str(form.get("all_scores", "false")).lower() in ("1", "true", "yes")
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "send images as multipart/form-data (file fields) or as JSON with base64 "
                                 f"`images`, not {media_type[:100]!r}")
    try:
        payload = ImageRequest.model_validate_json(await request.body())
    except ValidationError as err:
        raise HTTPException(422, [{"loc": ["body", *p["loc"]], "msg": p["msg"], "type": p["type"]}
                                  for p in err.errors(include_url=False, include_input=False)]) from None
    if (payload.images is None) == (payload.image is None):
        raise HTTPException(422, [{"loc": ["body"], "msg": "give either `images` (a list) or `image`"}])
    images, problems = _decode_base64(payload.images if payload.images is not None else [payload.image or ""])
    if problems:
        raise HTTPException(422, problems)
    return images, payload.all_scores


def _busy(err: Overloaded) -> HTTPException:
    return HTTPException(503, f"busy: {err}; retry shortly", headers={"Retry-After": retry_after_header(err.retry_after_s)})


def add_image_routes(app: FastAPI, batcher, caller: Callable, settings, run_name: str, responses: dict) -> None:
    @app.post("/v1/predict-images", responses=responses)
    async def predict_images(request: Request, who: str = Depends(caller)) -> dict[str, Any]:
        """Classify one or many images: multipart file fields, or JSON `{"images": [base64, ...]}`."""
        with batcher.incoming():
            images, all_scores = await _read(request, settings.max_texts, settings.max_body_bytes)
            problems = image_problems(images, settings.max_texts, settings.max_image_pixels)
            if problems:
                raise HTTPException(422, problems)
            try:
                future = batcher.submit(images, all_scores)
            except Overloaded as err:
                raise _busy(err) from None
        try:
            predictions = await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"prediction took longer than {settings.request_timeout_s:g} s") from None
        except Overloaded as err:
            raise _busy(err) from None
        return {"predictions": predictions, "model": run_name}

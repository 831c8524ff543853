"""POST /v1/predict-images: images in (multipart upload or base64 JSON), one prediction each out.

Added to the app only for a model whose task takes images. It is the text route's twin and as thin:
the same key check, rate limit and micro-batcher, then the same Predictor. What it adds are the
image limits, checked on each image's header before any pixel is decoded: images per request
(--max-texts), the body size (--max-body-bytes, which uploads usually need raised), the pixel
count (--max-image-pixels) and the format (JPEG, PNG, WebP, GIF, BMP). Every problem answers 422
naming the image by its position, or the form field.

Over HTTP an image is only ever bytes the client sent, never a path on the server: the text route
`/v1/predict` of an image run answers 422 pointing here before reading its body (a string there
was once opened as a file: secrets read, a file-existence oracle, a FIFO that hung the model
thread), and a text form field is refused, not read as a path.
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
from starlette.exceptions import HTTPException as StarletteHTTPException

from paretune.serving.batcher import Overloaded
from paretune.serving.framing import is_json, media_type, refuse_duplicate_keys
from paretune.serving.limits import retry_after_header

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
TEXT_ROUTE_REFUSAL = ("this run classifies images: POST them to /v1/predict-images, as multipart file fields "
                      "or as JSON {\"images\": [base64, ...]}; /v1/predict takes texts, and an image is never "
                      "read from a path on the server")
BOOLEANS = {"true": True, "false": False}


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
    sent_as = media_type(request.headers)
    if sent_as == "multipart/form-data":
        return await _read_form(request, max_images, max_bytes)
    if not is_json(sent_as):  # a body without a Content-Type is not guessed to be JSON
        raise HTTPException(415, "send images as multipart/form-data (file fields) or as JSON with base64 "
                                 "`images` (Content-Type: application/json), not "
                                 + (repr(sent_as[:100]) if sent_as else "without a Content-Type"))
    body = await request.body()
    refuse_duplicate_keys(body)
    try:
        payload = ImageRequest.model_validate_json(body)
    except ValidationError as err:
        raise HTTPException(422, [{"loc": ["body", *p["loc"]], "msg": p["msg"], "type": p["type"]}
                                  for p in err.errors(include_url=False, include_input=False)]) from None
    if (payload.images is None) == (payload.image is None):
        raise HTTPException(422, [{"loc": ["body"], "msg": "give either `images` (a list) or `image`"}])
    images, problems = _decode_base64(payload.images if payload.images is not None else [payload.image or ""])
    if problems:
        raise HTTPException(422, problems)
    return images, payload.all_scores


async def _read_form(request: Request, max_images: int, max_bytes: int) -> tuple[list[bytes], bool]:
    """File fields are the images (any field name); `all_scores` is `true` or `false`; any other text
    field is refused, a path above all: it is never opened."""
    try:
        form = await request.form(max_files=max_images, max_fields=max_images + 4, max_part_size=max_bytes)
    except StarletteHTTPException as err:  # Starlette's 400 for a form over its limits or malformed
        too_many = "Too many files" in str(err.detail)
        message = (f"more than {max_images} images in one request; the limit is {max_images}: split the request"
                   if too_many else f"the multipart body cannot be read: {err.detail}")
        raise HTTPException(422, [{"loc": ["body", "images"] if too_many else ["body"], "msg": message}]) from None
    images, flags, problems = [], [], []
    for name, value in form.multi_items():
        if hasattr(value, "read"):
            images.append(await value.read())
        elif name == "all_scores":
            flags.append(value.lower())
        else:
            problems.append({"loc": ["body", name[:100]], "msg": "a text field: images are uploaded as file "
                             "fields (curl -F images=@photo.jpg), never read from a path on the server"})
    if len(flags) > 1 or (flags and flags[0] not in BOOLEANS):  # strict, as in JSON: "yes" is not true
        problems.append({"loc": ["body", "all_scores"], "msg": "must be true or false, sent once"})
    if problems:
        raise HTTPException(422, problems)
    return images, bool(flags) and BOOLEANS[flags[0]]


def _busy(err: Overloaded) -> HTTPException:
    return HTTPException(503, f"busy: {err}; retry shortly", headers={"Retry-After": retry_after_header(err.retry_after_s)})


def add_image_routes(app: FastAPI, batcher, caller: Callable, settings, run_name: str, responses: dict) -> None:
    @app.post("/v1/predict", responses={401: responses[401], 422: {"description": TEXT_ROUTE_REFUSAL}})
    async def predict_texts(_: str = Depends(caller)) -> None:
        """An image run takes no texts: send images to /v1/predict-images."""
        raise HTTPException(422, TEXT_ROUTE_REFUSAL)  # the body is never read: nothing in it is opened

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

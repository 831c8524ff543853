"""onnx: export to ONNX with dynamic batch and sequence axes, served by ONNX Runtime.

Exported from a wrapper that takes input_ids and attention_mask and returns the logits alone,
by torch.onnx's dynamo exporter (the default and recommended one since torch 2.9) or, with
exporter=torchscript, by the older TorchScript exporter: both pass the parity check on
BERT-style models, and the older one exports in a fraction of the time (0.2 s against 10-15 s
for a tiny model on 2 CPU cores). Right after export the ONNX Runtime outputs are compared with PyTorch's on
validation batches of mixed lengths (padded positions excluded); the largest absolute logit
difference is recorded, and an export that disagrees by more than PARITY_LIMIT is refused.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.data.batching import BatchPlan, make_loader
from paretune.errors import ParetuneError
from paretune.stored.onnx import ONNX_FILE
from paretune.stored.ort_model import OrtModel, make_session

log = logging.getLogger("paretune")

PARITY_LIMIT = 1e-3  # fp32 ONNX vs PyTorch; measured differences are about 1e-6
PARITY_ROWS = 64
EXTERNAL_DATA_BYTES = 1_800_000_000
TEXT_INPUTS = ("input_ids", "attention_mask")  # protobuf files stop at 2 GB: larger weights go beside the graph


Exporter = Literal["dynamo", "torchscript"]


class OnnxOptions(CompressOptions):
    opset: int | None = Field(None, ge=14, description="ONNX opset; default: the exporter's own.")
    exporter: Exporter = Field("dynamo", description="torch.onnx exporter: dynamo, or the faster torchscript.")


class LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class PixelLogitsOnly(LogitsOnly):
    """Image models: named arguments, because torch.export ties dynamic shapes to them."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.model(pixel_values=pixel_values).logits


def sample_batches(context: CompressContext, rows: int = PARITY_ROWS, batch_size: int = 16) -> list[dict]:
    """Validation rows in batches of the task's inputs (text: mixed lengths, so padding varies)."""
    encoded = context.validation.encoded
    plan = BatchPlan(encoded.lengths(), batch_size=batch_size, shuffle=True, seed=0, sort_by_length=False)
    batches = []
    for batch in make_loader(encoded, plan, context.pad_id, False, context.task.collate):
        batches.append({k: batch[k] for k in context.task.model_inputs})
        if sum(len(next(iter(b.values()))) for b in batches) >= rows:
            break
    return batches


def _feeds(batch: dict) -> dict[str, np.ndarray]:
    """ONNX inputs: token ids and masks as int64, pixels as float32 (contiguous, whatever the layout)."""
    return {k: (v.float() if v.is_floating_point() else v.long()).contiguous().numpy() for k, v in batch.items()}


def export_onnx(model: torch.nn.Module, context: CompressContext, path: Path, opset: int | None,
                exporter: Exporter = "dynamo") -> None:
    for chatty in ("onnx_ir", "onnxscript", "onnxruntime", "torch.onnx", "torch.export"):
        logging.getLogger(chatty).setLevel(logging.ERROR)  # one line per graph pass otherwise
    input_names = tuple(context.task.model_inputs)
    text = input_names == TEXT_INPUTS
    wrapper = (LogitsOnly if text else PixelLogitsOnly)(model.float().eval()).eval()
    example = _example_inputs(context)
    names = {"input_names": list(input_names), "output_names": ["logits"]}
    # Token inputs vary in batch and length; pixel inputs in batch only (the size is the task's).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about transformers internals
        if exporter == "torchscript":
            token_level = wrapper(*example).ndim == 3
            axes = {0: "batch", 1: "sequence"} if text else {0: "batch"}
            torch.onnx.export(wrapper, example, str(path), dynamo=False, opset_version=opset or 17, **names,
                              dynamic_axes={**{n: axes for n in input_names},
                                            "logits": axes if token_level else {0: "batch"}})
            return
        axes = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")} if text else \
            {0: torch.export.Dim("batch")}
        program = torch.onnx.export(wrapper, example, dynamo=True, verbose=False, opset_version=opset, **names,
                                    dynamic_shapes={n: axes for n in input_names})
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    program.save(str(path), external_data=size > EXTERNAL_DATA_BYTES)
    if size <= EXTERNAL_DATA_BYTES:
        _strip_trace_metadata(path)


def _strip_trace_metadata(path: Path) -> None:
    """Drop the Python stack traces the dynamo exporter stores on every node (3x a tiny model's size)."""
    import onnx as onnx_lib

    graph = onnx_lib.load(str(path))
    for node in graph.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx_lib.save(graph, str(path))


def _example_inputs(context: CompressContext) -> tuple[torch.Tensor, ...]:
    # Batch and length above 1, and rows of unequal length: torch.export specializes any axis
    # it sees at size 1, and padding must be in the traced graph.
    batch = sample_batches(context, rows=3, batch_size=3)[0]
    if tuple(batch) != TEXT_INPUTS:  # pixels: two or more images, contiguous
        return tuple(torch.cat([v, v])[:max(2, len(v))].contiguous() for v in batch.values())
    ids, mask = batch["input_ids"].long(), batch["attention_mask"].long()
    if ids.shape[0] < 2 or ids.shape[1] < 2:
        ids = torch.cat([ids, ids])[:2].repeat(1, 2)
        mask = torch.cat([mask, mask])[:2].repeat(1, 2)
    return ids, mask


@torch.no_grad()
def max_logit_difference(reference: torch.nn.Module, onnx_path: Path, context: CompressContext) -> float:
    """Largest |ONNX - PyTorch| logit over real (unpadded) positions of validation batches."""
    session = make_session(onnx_path)
    reference = reference.float().eval()
    worst = 0.0
    for batch in sample_batches(context):
        feeds = _feeds(batch)
        expected = reference(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        (got,) = session.run(["logits"], feeds)
        difference = np.abs(got - expected)
        if difference.ndim == 3:  # token classification: ignore logits at padding
            difference = difference[feeds["attention_mask"].astype(bool)]
        worst = max(worst, float(difference.max()))
    return worst


def opset_of(path: Path) -> int:
    import onnx as onnx_lib

    graph = onnx_lib.load(str(path), load_external_data=False)
    return next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))


def apply(model: torch.nn.Module, options: OnnxOptions, context: CompressContext) -> Compressed:
    path = context.workdir / ONNX_FILE
    export_onnx(model, context, path, options.opset, options.exporter)
    difference = max_logit_difference(model, path, context)
    if difference > PARITY_LIMIT:
        raise ParetuneError(f"the ONNX export disagrees with PyTorch by {difference:.2e} in the logits "
                            f"(limit {PARITY_LIMIT:g}); try another --opset or exporter, or report the model type")
    return Compressed(form="onnx", model=OrtModel(path, model.config),
                      settings={"opset": opset_of(path), "exporter": options.exporter},
                      checks={"max_abs_logit_diff": difference})


METHOD = CompressionMethod(
    name="onnx", options=OnnxOptions, apply=apply, generative=False,
    description="ONNX export served by ONNX Runtime (parity with PyTorch checked)",
)

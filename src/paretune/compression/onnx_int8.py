"""onnx-int8: the ONNX export, then ONNX Runtime's dynamic int8 quantization of its MatMuls and
convolutions (ConvInteger: the int8 form of a convolutional image backbone).

Like int8-dynamic, weights become int8 once and activations are quantized per call, with no
calibration data. The graph is first run through ONNX Runtime's quantization pre-processing
(shape inference and graph optimization), which its documentation recommends before quantizing.
Parity is measured against the fp32 PyTorch model and recorded; int8 rounding moves logits by
about 1e-2, so no limit is enforced here: the validation metrics say what it cost.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
from pydantic import Field

from paretune.compression import onnx
from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.errors import ParetuneError
from paretune.stored.onnx import ONNX_FILE
from paretune.stored.ort_model import OrtModel


class OnnxInt8Options(CompressOptions):
    opset: int | None = Field(None, ge=14, description="ONNX opset; default: the exporter's own.")
    exporter: onnx.Exporter = Field("dynamo", description="torch.onnx exporter: dynamo, or the faster torchscript.")
    per_channel: bool = Field(False, description="One weight scale per output channel.")
    reduce_range: bool = Field(
        False, description="7-bit weights: avoids saturation on x86 CPUs without VNNI, at some accuracy.")


def apply(model: torch.nn.Module, options: OnnxInt8Options, context: CompressContext) -> Compressed:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise ParetuneError("onnx-int8 needs onnxruntime: pip install 'paretune[onnx]'") from None
    prepared = export_prepared(model, context, options.opset, options.exporter)
    target = context.workdir / ONNX_FILE
    with _quiet_root_logger():  # the quantizer logs a line per tensor on the root logger
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                         per_channel=options.per_channel, reduce_range=options.reduce_range)
    difference = onnx.max_logit_difference(model, target, context)
    return Compressed(
        form="onnx-int8", model=OrtModel(target, model.config),
        settings={**options.model_dump(), "opset": onnx.opset_of(target)},
        checks={"max_abs_logit_diff": difference},
    )


def export_prepared(model: torch.nn.Module, context: CompressContext, opset: int | None, exporter) -> Path:
    """The fp32 ONNX export, run through ONNX Runtime's quantization pre-processing: what both
    int8 forms quantize (workdir/prepared.onnx)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    exported = context.workdir / "fp32" / ONNX_FILE
    exported.parent.mkdir(parents=True, exist_ok=True)
    onnx.export_onnx(model, context, exported, opset, exporter)
    prepared = context.workdir / "prepared.onnx"
    # Symbolic shape inference cannot follow BERT's position slicing (min(max_positions,
    # sequence)); ONNX's own shape inference and the graph optimization still run.
    quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)
    return prepared


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


METHOD = CompressionMethod(
    name="onnx-int8", options=OnnxInt8Options, apply=apply, generative=False,
    description="ONNX export with ONNX Runtime dynamic int8 quantization (CPU serving)",
)

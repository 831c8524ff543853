"""onnx-int8-static: the ONNX export, then ONNX Runtime's static int8 quantization, calibrated.

Unlike onnx-int8 (dynamic: activations quantized per call from their own range), the activation
ranges here are fixed beforehand from calibration batches of the run's training data, preprocessed
as evaluation does (no augmentation): every convolution and MatMul then runs in int8 end to end,
with no range computed at run time. This is post-training static quantization as ONNX Runtime
describes it for CNNs (QDQ format, per-channel int8 weights, uint8 activations, MinMax ranges).
Parity with the fp32 PyTorch model is measured and recorded, not enforced: the validation
metrics say what int8 cost.
"""
from __future__ import annotations

import torch
from pydantic import Field

from paretune.compression import onnx
from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.compression.onnx_int8 import _quiet_root_logger, export_prepared
from paretune.data.batching import BatchPlan, make_loader
from paretune.errors import ParetuneError
from paretune.stored.onnx import ONNX_FILE
from paretune.stored.ort_model import OrtModel


class OnnxInt8StaticOptions(CompressOptions):
    opset: int | None = Field(None, ge=14, description="ONNX opset; default: the exporter's own.")
    exporter: onnx.Exporter = Field("dynamo", description="torch.onnx exporter: dynamo, or the faster torchscript.")
    per_channel: bool = Field(True, description="One weight scale per output channel.")
    calibration_rows: int = Field(128, ge=1, description="Training rows whose activations fix the int8 ranges.")


class _Calibration:
    """ONNX Runtime's CalibrationDataReader: one feed dict per call, None when done."""

    def __init__(self, context: CompressContext, rows: int):
        encoded = context.train
        plan = BatchPlan(encoded.lengths(), batch_size=16, shuffle=True, seed=0, sort_by_length=False)
        self.feeds, seen = [], 0
        for batch in make_loader(encoded, plan, context.pad_id, False, context.task.collate):
            self.feeds.append(onnx._feeds({k: batch[k] for k in context.task.model_inputs}))
            seen += len(batch["index"])
            if seen >= rows:
                break
        self._next = iter(self.feeds)

    def get_next(self):
        return next(self._next, None)


def apply(model: torch.nn.Module, options: OnnxInt8StaticOptions, context: CompressContext) -> Compressed:
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise ParetuneError("onnx-int8-static needs onnxruntime: pip install 'paretune[onnx]'") from None
    prepared = export_prepared(model, context, options.opset, options.exporter)
    calibration = _Calibration(context, options.calibration_rows)
    target = context.workdir / ONNX_FILE
    with _quiet_root_logger():
        quantize_static(str(prepared), str(target), calibration, quant_format=QuantFormat.QDQ,
                        per_channel=options.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    difference = onnx.max_logit_difference(model, target, context)
    rows = sum(len(next(iter(f.values()))) for f in calibration.feeds)
    return Compressed(
        form="onnx-int8", model=OrtModel(target, model.config),
        settings={**options.model_dump(), "opset": onnx.opset_of(target), "calibrated_on_rows": rows},
        checks={"max_abs_logit_diff": difference},
    )


METHOD = CompressionMethod(
    name="onnx-int8-static", options=OnnxInt8StaticOptions, apply=apply, generative=False,
    description="ONNX export with ONNX Runtime static int8 quantization, calibrated on training rows",
)

"""int8-dynamic: PyTorch dynamic int8 quantization of the Linear layers, for CPU serving.

Weights are quantized once to int8 with one scale per output channel (per tensor on request);
activations are quantized on the fly at each call, so no calibration data is needed. The task
head stays fp32: it is a sliver of the compute and the logits are what the user reads.

The quantizing itself and the stored form (int8 weights with their scales in safetensors, about
a third smaller than fp32 on MiniLM, whose embeddings stay fp32) live in stored/int8_dynamic.py,
because loading quantizes the rebuilt model the same way.
"""
from __future__ import annotations

import torch
from pydantic import Field

from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.errors import ParetuneError
from paretune.stored.int8_dynamic import NAME, quantize, quantized_linear


class Int8Options(CompressOptions):
    # Per channel measured as fast as per tensor on MiniLM (2-core AVX2) and lost less accuracy
    # on SST-2 (0.2 against 0.7 points, bench/RESULTS.md).
    per_channel: bool = Field(True, description="One weight scale per output row; False: one per tensor.")


def apply(model: torch.nn.Module, options: Int8Options, context: CompressContext) -> Compressed:
    quantized = quantize(model, options.per_channel)
    layers = sum(isinstance(m, quantized_linear()) for m in quantized.modules())
    if not layers:  # a convolutional network: its only Linear is the fp32 head, nothing would change
        raise ParetuneError(f"int8-dynamic quantizes Linear layers, and the body of {type(model).__name__} has "
                            "none (a convolutional network); use --method onnx-int8, which quantizes convolutions")
    return Compressed(form=NAME, model=quantized, form_settings={"per_channel": options.per_channel},
                      settings={**options.model_dump(), "quantized_layers": layers})


METHOD = CompressionMethod(
    name=NAME, options=Int8Options, apply=apply,
    description="dynamic int8 quantization of the Linear layers (CPU serving)",
)

"""QLoRA (Dettmers et al. 2023): LoRA over a base whose block projections are stored in 4 bits.

The frozen nn.Linear layers inside the transformer blocks become bitsandbytes `Linear4bit`
(NF4 by default, with double quantization of the scales), cutting their memory about 4x against
bf16; the LoRA update, the embeddings, norms and task head stay in full precision. peft sees the
4-bit layers and wraps them with its bitsandbytes LoRA layer. bitsandbytes' 4-bit kernels run on
CUDA only, so on any other device `apply` stops before touching the model.

Export merges the adapter onto the *original* full-precision weights (reloaded from the model
source), which gives a plain transformers model; its outputs differ slightly from the 4-bit
model's, as the adapter was trained against quantized weights. GPT-2's Conv1D projections are
not nn.Linear and stay unquantized.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from paretune.errors import ParetuneError
from paretune.methods import targets
from paretune.methods.base import Method, MethodContext
from paretune.methods.layers import transformer_blocks
from paretune.methods.lora import LoraOptions, lora_config


class QLoraOptions(LoraOptions):
    name: Literal["qlora"] = "qlora"
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the base weights.")
    double_quant: bool = Field(True, description="Quantize the quantization scales too (~0.4 bit/param).")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Dtype the 4-bit weights are dequantized to for each matmul."
    )


def require_cuda_bitsandbytes():
    if not torch.cuda.is_available():
        raise ParetuneError(
            "method qlora needs a CUDA GPU: bitsandbytes' 4-bit base weights run only on CUDA, and "
            "no GPU is visible here. Use method.name=lora (the same adapter over full-precision "
            "weights) on this machine."
        )
    try:
        import bitsandbytes
    except ImportError:
        raise ParetuneError("method qlora needs bitsandbytes: pip install bitsandbytes") from None
    return bitsandbytes


def quantize_blocks(model: torch.nn.Module, options: QLoraOptions) -> None:
    """Swap every nn.Linear inside the transformer blocks for a 4-bit bitsandbytes layer, on the GPU."""
    bnb = require_cuda_bitsandbytes()
    for block in transformer_blocks(model):
        for name, linear in list(block.named_modules()):
            if type(linear) is not torch.nn.Linear:
                continue
            quantized = bnb.nn.Linear4bit(
                linear.in_features, linear.out_features, bias=linear.bias is not None,
                compute_dtype=getattr(torch, options.compute_dtype),
                compress_statistics=options.double_quant, quant_type=options.quant_type,
            )
            quantized.weight = bnb.nn.Params4bit(
                linear.weight.data, requires_grad=False,
                compress_statistics=options.double_quant, quant_type=options.quant_type,
            )
            if linear.bias is not None:
                quantized.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
            parent_name, _, child = name.rpartition(".")
            setattr(block.get_submodule(parent_name), child, quantized)
    model.to("cuda")  # Params4bit quantizes as it moves to the GPU
    # What transformers sets when it loads in 4 bits; peft reads it to pick its bitsandbytes layer.
    model.is_loaded_in_4bit = True


def is_quantized(model: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "Linear4bit" for m in model.modules())


def apply(model: torch.nn.Module, options: QLoraOptions, context: MethodContext) -> torch.nn.Module:
    require_cuda_bitsandbytes()  # fail before any work
    config = lora_config(model, options, context)  # targets resolved on the unquantized model
    quantize_blocks(model, options)
    return targets.wrap_with_peft(model, config)


METHOD = Method("qlora", QLoraOptions, apply, "LoRA over 4-bit base weights (peft + bitsandbytes, CUDA)",
                lr_scale=10.0)

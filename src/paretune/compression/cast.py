"""fp16 and bf16: the weights cast to 16 bits, half the size, for GPU serving.

GPUs run 16-bit matrix products on their tensor cores; on a CPU these forms mostly save disk
and memory (fp16 arithmetic there is slow unless the CPU has AVX512-FP16 or AMX). bf16 keeps
fp32's exponent range, so it cannot overflow where fp16 (max 65504) can; fp16 keeps 3 more bits
of mantissa. The saved folder is plain transformers with `dtype` in config.json.
"""
from __future__ import annotations

import torch

from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.stored.cast import DTYPES


class CastOptions(CompressOptions):
    pass


def _cast(form: str):
    def apply(model: torch.nn.Module, options: CastOptions, context: CompressContext) -> Compressed:
        dtype = DTYPES[form]
        limit = torch.finfo(dtype).max
        # fp16 turns any weight above 65504 into inf: refuse rather than save a broken model.
        too_large = [n for n, p in model.named_parameters() if p.detach().abs().max() > limit]
        if too_large:
            from paretune.errors import ParetuneError

            raise ParetuneError(f"weights {too_large[:3]} exceed the {form} range ({limit:g}); use bf16")
        return Compressed(form=form, model=model.to(dtype), settings={"dtype": str(dtype).removeprefix("torch.")})

    return apply


FP16 = CompressionMethod(name="fp16", options=CastOptions, apply=_cast("fp16"),
                         description="weights cast to float16 (GPU serving; half the size)")
BF16 = CompressionMethod(name="bf16", options=CastOptions, apply=_cast("bf16"),
                         description="weights cast to bfloat16 (GPU serving; half the size, fp32 range)")

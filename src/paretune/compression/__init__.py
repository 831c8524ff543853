"""Compression methods: each takes a finished run and writes a new, ordinary run folder.

One module per method, registered here by one line. The shared steps (load the parent, save the
result in its stored form, evaluate, time, write the run folder) live in `run.py` and
`run_writer.py`; how each stored form saves and loads lives in `paretune.stored`, which methods
name in their result and never import back.
"""
from __future__ import annotations

from paretune.compression import (cast, drop_layers, int8_dynamic, onnx, onnx_int8, onnx_int8_static, prune_heads,
                                  prune_magnitude)
from paretune.compression.base import CompressionMethod
from paretune.errors import ParetuneError

METHODS: dict[str, CompressionMethod] = {m.name: m for m in (
    int8_dynamic.METHOD, onnx.METHOD, onnx_int8.METHOD, onnx_int8_static.METHOD, prune_magnitude.METHOD, prune_heads.METHOD,
    drop_layers.METHOD, cast.FP16, cast.BF16,
)}


def get_method(name: str) -> CompressionMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ParetuneError(f"unknown compression method '{name}'; available: {', '.join(METHODS)}") from None

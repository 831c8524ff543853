"""Tokenization cache: a second run on the same data and tokenizer does not tokenize again.

The key hashes everything the encoding depends on (examples, tokenizer vocabulary and rules,
task and its label map, max_length), so a stale entry cannot be hit. Entries are safetensors
files (ragged columns flattened with offsets): loading them never unpickles anything.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from paretune.data.encoded import Encoded

log = logging.getLogger("paretune.data")
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("PARETUNE_CACHE", Path.home() / ".cache" / "paretune")) / "tokens"


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(tokenizer, parts: dict[str, Any], examples) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"v": FORMAT_VERSION, "tok": tokenizer_fingerprint(tokenizer), **parts},
                             sort_keys=True, default=str).encode())
    for ex in examples:
        digest.update(json.dumps([ex.text, ex.label], default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def cached_encode(cache_dir: Path | None, key: str, encode: Callable[[], Encoded]) -> tuple[Encoded, bool]:
    """Return (encoded, hit). A broken cache entry is ignored and rewritten, never fatal."""
    if cache_dir is None:
        return encode(), False
    path = Path(cache_dir) / f"{key}.safetensors"
    if path.is_file():
        try:
            return _load(path), True
        except Exception as err:  # corrupt or truncated entry: recompute
            log.warning("ignoring unreadable tokenization cache %s: %s", path, err)
    encoded = encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(_to_arrays(encoded), str(tmp), metadata={"size_key": encoded.size_key})
    os.replace(tmp, path)
    return encoded, False


def _flatten(rows: list[np.ndarray], name: str, out: dict[str, np.ndarray]) -> None:
    out[name] = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    out[name + ".offsets"] = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)


def _unflatten(arrays: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    flat, offsets = arrays[name], arrays[name + ".offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _to_arrays(encoded: Encoded) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, rows in encoded.arrays.items():
        _flatten(rows, name, arrays)
    if encoded.labels is not None:
        arrays["labels"] = np.ascontiguousarray(encoded.labels)
    return arrays


def _load(path: Path) -> Encoded:
    with safe_open(str(path), framework="np") as f:
        arrays = {name: f.get_tensor(name) for name in f.keys()}
        size_key = (f.metadata() or {}).get("size_key", "input_ids")  # entries from before: token ids
    ragged = {name: _unflatten(arrays, name) for name in arrays if name + ".offsets" in arrays}
    return Encoded(labels=arrays.get("labels"), size_key=size_key, **ragged)

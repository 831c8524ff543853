"""A byte-level BPE tokenizer (GPT-2, SmolLM2, Llama 3, Qwen2) as GGUF metadata, the way llama.cpp's
converter writes it: tokens by id, their types, the merges, the pre-tokenizer's llama.cpp name,
the special token ids and the chat template.

llama.cpp does not read a tokenizer.json: it knows a fixed set of pre-tokenizers (how text is cut
into words before merges) by name. The run's own pre-tokenizer is matched to one of them here; a
tokenizer that matches none is refused rather than written with a split that tokenizes
differently from training.
"""
from __future__ import annotations

import json
from typing import Any

from paretune.errors import ParetuneError
from paretune.tasks.chat_format import END_OF_TURN_TOKENS

# The split patterns of the pre-tokenizers llama.cpp names (llama-vocab.cpp), as tokenizer.json spells them.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLITS = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5  # gguf.TokenType values


def tokenizer_json(tokenizer) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ParetuneError(f"GGUF export needs a fast tokenizer; the run's is {type(tokenizer).__name__}")
    return json.loads(backend.to_str())


def pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer of a byte-level tokenizer.json, or a ParetuneError."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"  # digits one by one, then GPT-2's split
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        if pattern in SPLITS:
            return SPLITS[pattern]
    raise ParetuneError(
        "GGUF export: the tokenizer's pre-tokenizer (" + json.dumps(pre)[:200] + ") matches none that "
        "llama.cpp knows (gpt-2, smollm, llama-bpe, qwen2); a file written anyway would tokenize "
        "differently from training"
    )


def check_byte_level(spec: dict[str, Any]) -> None:
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ParetuneError(
            f"GGUF export writes byte-level BPE tokenizers (GPT-2, SmolLM2, Llama 3, Qwen2); this run's is "
            f"{model.get('type')} with a {(spec.get('decoder') or {}).get('type')} decoder"
        )


def merges_of(spec: dict[str, Any]) -> list[str]:
    merges = spec["model"].get("merges") or []
    # tokenizer.json spells a merge "a b" (old) or ["a", "b"] (new); llama.cpp reads "a b"
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def token_table(tokenizer, vocab_rows: int) -> tuple[list[str], list[int]]:
    """Token text and type for every row of the embedding, in id order (rows the tokenizer does not
    use are llama.cpp's [PADn] placeholders)."""
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = getattr(tokenizer, "added_tokens_decoder", {})
    tokens, types = [], []
    for index in range(vocab_rows):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(UNUSED)
        elif index in added:
            tokens.append(token)
            types.append(CONTROL if added[index].special else USER_DEFINED)
        else:
            tokens.append(token)
            types.append(NORMAL)
    return tokens, types


def adds_token(tokenizer, token_id: int | None, first: bool) -> bool:
    """Does encoding plain text add this token (BOS at the start, EOS at the end)?"""
    if token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0 if first else -1] == token_id


def check_tokenizer(tokenizer) -> str:
    """The llama.cpp pre-tokenizer name for `tokenizer`, or a ParetuneError before anything is written."""
    spec = tokenizer_json(tokenizer)
    check_byte_level(spec)
    return pre_tokenizer_name(spec)


def add_tokenizer(writer, tokenizer, vocab_rows: int) -> None:
    """Everything llama.cpp (and transformers' GGUF reader) needs to rebuild `tokenizer`."""
    spec = tokenizer_json(tokenizer)
    pre = check_tokenizer(tokenizer)
    if len(tokenizer) > vocab_rows:
        raise ParetuneError(f"GGUF export: the tokenizer has {len(tokenizer)} tokens but the model's "
                            f"embedding only {vocab_rows} rows")
    tokens, types = token_table(tokenizer, vocab_rows)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges_of(spec))
    specials = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
                "pad": tokenizer.pad_token_id}
    for kind, token_id in specials.items():
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
    vocab = tokenizer.get_vocab()
    turn_end = next((vocab[t] for t in END_OF_TURN_TOKENS if t in vocab and t != "<|endoftext|>"), None)
    if turn_end is not None and turn_end != tokenizer.eos_token_id:  # llama.cpp stops at both
        writer.add_eot_token_id(int(turn_end))
    writer.add_add_bos_token(adds_token(tokenizer, tokenizer.bos_token_id, first=True))
    writer.add_add_eos_token(adds_token(tokenizer, tokenizer.eos_token_id, first=False))
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(template)

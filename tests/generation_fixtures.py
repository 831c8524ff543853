"""A tiny random Llama with a ChatML tokenizer made on the fly, and toy instruction data."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import FILLER, NEGATIVE, NOUNS, POSITIVE, sentiment_rows

SPECIALS = ["[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>"]
WORDS = sorted(set(FILLER + NOUNS + POSITIVE + NEGATIVE + ["positive", "negative", "user", "assistant", "system",
                                                          "review", "sentiment", ":", "?", "."]))


def chat_tokenizer(template: str | None = "chatml", extra_words: set[str] | None = None):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from paretune.tasks.chat_format import NAMED_TEMPLATES

    words = sorted(set(WORDS) | (extra_words or set()))
    letters = sorted(set("abcdefghijklmnopqrstuvwxyz") - set(words))
    vocab = SPECIALS + words + letters + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"],
                                   model_max_length=128)
    if template:
        fast.chat_template = NAMED_TEMPLATES[template]
    return fast


def words_of(*files: Path) -> set[str]:
    """Every lower-cased word and punctuation mark of text files (for a vocabulary that covers them)."""
    import re

    return {w for f in files for w in re.findall(r"\w+|[^\w\s]", f.read_text(encoding="utf-8").lower())}


def tiny_llama_dir(folder: Path, template: str | None = "chatml", extra_words: set[str] | None = None) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = chat_tokenizer(template, extra_words)
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_gpt2_dir(folder: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = chat_tokenizer()
    tokenizer.save_pretrained(folder)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def instruction_rows(n: int, seed: int) -> list[dict]:
    return [{"prompt": f"review : {text}", "completion": label} for text, label in sentiment_rows(n, seed)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path

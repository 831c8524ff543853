"""A tiny byte-level BPE tokenizer (GPT-2 / SmolLM2 / Qwen2 style) trained on the fly, and a random
Llama over it: what GGUF export and grammar-constrained decoding need (both read byte-level
vocabularies; the WordPiece tokenizer of generation_fixtures has neither bytes nor JSON marks)."""
from __future__ import annotations

from pathlib import Path

from generation_fixtures import WORDS

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
JSON_TEXT = ['{"name": "Ada", "age": 36, "ok": true, "tags": ["a", "b"]}', '[1, 2.5, -3, null, false]',
             "0123456789 {}[]:,\"'"]


def byte_bpe_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from paretune.tasks.chat_format import NAMED_TEMPLATES

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [" ".join(WORDS)] * 3 + [f"{w} {v}" for w in WORDS for v in WORDS[:5]] + JSON_TEXT * 5
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=256)
    fast.chat_template = NAMED_TEMPLATES["chatml"]
    return fast


def tiny_bpe_llama(tokenizer, seed: int = 0, extra_vocab: int = 0):
    """A random 2-layer Llama over `tokenizer` (its embedding `extra_vocab` rows longer, as real
    models pad theirs), grouped-query attention so the K permutation is exercised."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer) + extra_vocab, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                         tie_word_embeddings=False, rope_theta=10000.0)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_bpe_llama_dir(folder: Path, seed: int = 0) -> Path:
    tokenizer = byte_bpe_tokenizer()
    tokenizer.save_pretrained(folder)
    tiny_bpe_llama(tokenizer, seed).save_pretrained(folder, safe_serialization=True)
    return folder

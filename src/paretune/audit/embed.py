"""Sentence embeddings for the audit: the base model's mean-pooled last hidden states, unit length.

Mean pooling is what all-MiniLM-L6-v2 (the default model) was trained for, so cosine similarity
between these vectors is a meaningful "same sentence" measure and a linear classifier on them is a
fair, fast stand-in for a fine-tune when estimating which labels disagree with the text.
"""
from __future__ import annotations

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm

from paretune.config.schema import ModelConfig
from paretune.models import DTYPES, load_tokenizer, model_source
from paretune.models_gguf import plain_folder

BATCH_SIZE = 64


def load_encoder(config: ModelConfig):
    """The tokenizer and the bare encoder (no task head) of the run's base model: any model the
    run could train, a GGUF file or a decoder without a padding token included."""
    source = plain_folder(model_source(config))  # a .gguf file: its converted folder
    tokenizer = load_tokenizer(config, source)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # batches of texts are padded; the mask hides it
    encoder = transformers.AutoModel.from_pretrained(
        source, revision=config.revision, trust_remote_code=config.trust_remote_code,
        use_safetensors=True, dtype=DTYPES[config.dtype],
    )
    return tokenizer, encoder.eval()


@torch.inference_mode()
def embed_texts(texts: list[str], tokenizer, encoder, max_length: int, desc: str = "embed") -> np.ndarray:
    """One unit-length float32 vector per text, in order; a progress bar over the batches."""
    # Longest first so each batch pads little; the order is restored at the end.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    for start in tqdm(range(0, len(texts), BATCH_SIZE), desc=desc, unit="batch", leave=False):
        index = order[start:start + BATCH_SIZE]
        batch = tokenizer([texts[i] for i in index], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out[index] = torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()
    return out

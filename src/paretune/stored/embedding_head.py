"""embedding-head: a sentence-embedding body with a linear head on its mean-pooled embeddings.

What few-shot (SetFit) and zero-shot runs make: model/ holds the body as plain transformers
weights (AutoModel: no task head) and `head.safetensors`, the head's `weight` [classes, hidden]
and `bias` [classes]. The logits are `normalize(mean_pool(body(x))) @ weight.T + bias`; for
zero-shot the head's rows are the label descriptions' embeddings times a scale, so the logits are
scaled cosine similarities. Transformers' own classification heads read [CLS] through a pooler
instead, so this form loads through paretune's Predictor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers.modeling_outputs import SequenceClassifierOutput

from paretune.stored.base import StoredForm

NAME = "embedding-head"
HEAD_FILE = "head.safetensors"


class EmbeddingClassifier(torch.nn.Module):
    """body -> masked mean over tokens -> (L2-normalised) -> linear head."""

    def __init__(self, body: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor, normalize: bool = True):
        super().__init__()
        self.body, self.normalize = body, normalize
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    @property
    def config(self):
        return self.body.config

    def embed(self, input_ids, attention_mask=None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return mean_pool(self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                         attention_mask, self.normalize)

    def forward(self, input_ids, attention_mask=None, **_):
        return SequenceClassifierOutput(logits=self.head(self.embed(input_ids, attention_mask)))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The sentence embedding sentence-transformers gives MiniLM: the mean over real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


def save(model: EmbeddingClassifier, model_dir: Path, settings: dict[str, Any]) -> None:
    model.body.save_pretrained(model_dir)
    save_file({"weight": model.head.weight.detach().contiguous().cpu(),
               "bias": model.head.bias.detach().contiguous().cpu()}, str(Path(model_dir) / HEAD_FILE))
    settings.setdefault("normalize", model.normalize)


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    from transformers import AutoModel

    body = AutoModel.from_pretrained(model_dir, use_safetensors=True, **kwargs)
    head = load_file(str(Path(model_dir) / HEAD_FILE))
    return EmbeddingClassifier(body, head["weight"], head["bias"], bool((recorded or {}).get("normalize", True)))


def is_embedding_head(model_dir: Path) -> bool:
    return (Path(model_dir) / HEAD_FILE).is_file()


FORM = StoredForm(
    name=NAME, save=save, load=load, detect=is_embedding_head, plain_transformers=False,
    description="sentence-embedding body (mean pooling) with a linear head (few-shot, zero-shot)",
    use="a sentence-embedding body with a linear head in `head.safetensors`: load with paretune's Predictor",
)

"""Full fine-tuning: every weight trains, or every weight but the token-embedding table.

The token-embedding table of a BERT-sized encoder is about half its parameters (11.7M of
MiniLM's 22.7M), but each step touches only the rows of the tokens in the batch. Training it
anyway costs a dense gradient, its share of the norm clip and a full AdamW update on every step:
12% of a small-data MiniLM epoch on the 2-core CPU. `freeze_token_embeddings: auto` skips that
cost: it freezes the table when it is large enough for its update to matter (1M weights and up)
and not tied to an output layer (a language model's head, e.g. SmolLM2, or BERT's MLM decoder),
where freezing it would freeze the head too. Position and segment embeddings and the embedding
LayerNorm still train. `true` freezes the table anyway. The default, `false`, trains every weight:
frozen, SST-2 accuracy was the same on average over five seeds, but CoNLL F1 was 0.36 lower and
the SST-2 quality test's seed fell from 0.804 to 0.796 (bench/RESULTS.md, "frozen token
embeddings"), so the speed is opt-in.
"""
from __future__ import annotations

from typing import Literal

import torch

from paretune.methods.base import Method, MethodContext, MethodOptions

AUTO_FREEZE_MIN_WEIGHTS = 1_000_000  # below this a dense update of the table costs next to nothing


class FullOptions(MethodOptions):
    name: Literal["full"] = "full"
    freeze_token_embeddings: bool | Literal["auto"] = False


def token_table(model: torch.nn.Module) -> torch.nn.Parameter | None:
    """The input token-embedding weight, or None when the model has none (image models)."""
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    return embeddings.weight if isinstance(embeddings, torch.nn.Embedding) else None


def tied_to_output(model: torch.nn.Module, table: torch.nn.Parameter) -> bool:
    try:
        output = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return False
    weight = getattr(output, "weight", None)
    return weight is not None and weight.data_ptr() == table.data_ptr()


def apply(model: torch.nn.Module, options: FullOptions, context: MethodContext) -> torch.nn.Module:
    for param in model.parameters():
        param.requires_grad_(True)
    table = token_table(model)
    if table is None or options.freeze_token_embeddings is False:
        return model
    if options.freeze_token_embeddings == "auto" and (
            table.numel() < AUTO_FREEZE_MIN_WEIGHTS or tied_to_output(model, table)):
        return model
    table.requires_grad_(False)
    return model


METHOD = Method("full", FullOptions, apply, "update every weight (or all but the token embeddings)")

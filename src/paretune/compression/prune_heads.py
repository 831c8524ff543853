"""prune-heads: remove the attention heads that matter least, measured on labelled data.

Importance follows Michel, Levy and Neubig (2019), "Are Sixteen Heads Really Better than One?":
a gate of 1.0 multiplies each head's output, and a head's importance is the summed |d loss /
d gate| over batches, normalized per layer. The least important heads across all layers are
removed (at least one head stays in every layer) by cutting their rows out of the query, key
and value projections and their columns out of the output projection: smaller matrices, less
compute, same results for the heads that stay.

Transformers 5 no longer re-prunes heads on load, so config.json records each layer's head count
and the result is stored in the pruned-heads form (stored/pruned_heads.py, which also holds the
cutting itself, as loading cuts the empty model to those widths before its weights go in).
Supported: BERT-style attention (query/key/value + output.dense): BERT, RoBERTa, ELECTRA,
XLM-R, MiniLM.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from paretune.compression.base import CompressContext, Compressed, CompressionMethod, CompressOptions
from paretune.data.batching import make_loader
from paretune.errors import ParetuneError
from paretune.methods.layers import transformer_blocks
from paretune.stored import pruned_heads
from paretune.stored.pruned_heads import HEADS_KEY, attention_parts, head_count, keep_heads


class PruneHeadsOptions(CompressOptions):
    heads: float = Field(..., gt=0, description="Heads to remove: a fraction of all heads (< 1) or a count (>= 1).")
    importance_split: str = Field(
        "train", description="Rows that score the heads: 'train' keeps validation an honest held-out "
        "score; 'validation' is what Michel et al. did.")
    importance_rows: int = Field(512, ge=8, description="How many rows score the heads.")

    @model_validator(mode="after")
    def _check(self) -> "PruneHeadsOptions":
        if self.importance_split not in ("train", "validation"):
            raise ValueError("importance_split must be 'train' or 'validation'")
        if self.heads >= 1 and not float(self.heads).is_integer():
            raise ValueError(f"--heads {self.heads}: a count must be whole, a fraction below 1")
        return self


@contextmanager
def _head_gates(blocks):
    """Gates of 1.0 on every head's output, as inputs to each block's output projection."""
    counts = [head_count(attention_parts(b)[0]) for b in blocks]
    gates = torch.ones(len(blocks), max(counts), requires_grad=True)
    handles = []
    for layer, block in enumerate(blocks):
        def gate(module, args, layer=layer, heads=counts[layer]):
            (hidden,) = args
            split = hidden.view(*hidden.shape[:-1], heads, -1)
            return ((split * gates[layer, :heads, None].to(hidden.dtype)).flatten(-2),)

        handles.append(attention_parts(block)[2].register_forward_pre_hook(gate))
    try:
        yield gates, counts
    finally:
        for handle in handles:
            handle.remove()


def head_importance(model: torch.nn.Module, context: CompressContext, split: str, rows: int):
    """(importance [layers, max heads], heads per layer), normalized per layer as Michel et al."""
    encoded = context.train if split == "train" else context.validation.encoded
    rows = min(rows, len(encoded))
    chosen = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(0))[:rows].tolist()
    plan = [chosen[i:i + 16] for i in range(0, rows, 16)]
    blocks = transformer_blocks(model)
    device = next(model.parameters()).device
    requires = {n: p.requires_grad for n, p in model.named_parameters()}
    model.eval().requires_grad_(False)  # gradients flow to the gates only
    total = None
    with _head_gates(blocks) as (gates, counts):
        for batch in tqdm(make_loader(encoded, plan, context.pad_id, collate=context.task.collate), total=len(plan),
                          desc="head importance", unit="batch", disable=None):
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
            context.task.loss(logits, batch["labels"].to(device)).backward()
            total = gates.grad.abs() if total is None else total + gates.grad.abs()
            gates.grad = None
    for name, param in model.named_parameters():
        param.requires_grad_(requires[name])
    norms = total.norm(dim=1, keepdim=True).clamp_min(1e-20)
    return total / norms, counts


def choose_removals(importance: torch.Tensor, counts: list[int], heads: float) -> dict[int, list[int]]:
    """The least important heads, globally, leaving every layer at least one head."""
    total = sum(counts)
    n_remove = round(heads * total) if heads < 1 else int(heads)
    if n_remove > total - len(counts):
        raise ParetuneError(f"--heads {heads:g} removes {n_remove} of {total} heads, but every one of the "
                            f"{len(counts)} layers keeps at least one: remove at most {total - len(counts)}")
    ranked = sorted((float(importance[l, h]), l, h) for l, c in enumerate(counts) for h in range(c))
    removed: dict[int, list[int]] = {}
    left = list(counts)
    for _, layer, head in ranked:
        if sum(len(v) for v in removed.values()) == n_remove:
            break
        if left[layer] > 1:
            removed.setdefault(layer, []).append(head)
            left[layer] -= 1
    return {layer: sorted(heads_) for layer, heads_ in sorted(removed.items())}


def apply(model: torch.nn.Module, options: PruneHeadsOptions, context: CompressContext) -> Compressed:
    importance, counts = head_importance(model, context, options.importance_split, options.importance_rows)
    removed = choose_removals(importance, counts, options.heads)
    blocks = transformer_blocks(model)
    for layer, heads in removed.items():
        keep_heads(blocks[layer], [h for h in range(counts[layer]) if h not in heads])
    after = [head_count(attention_parts(b)[0]) for b in blocks]
    setattr(model.config, HEADS_KEY, after)
    n_removed = sum(counts) - sum(after)
    return Compressed(
        form=pruned_heads.NAME, model=model,
        settings={**options.model_dump(), "removed": {str(k): v for k, v in removed.items()},
                  "heads_before": sum(counts), "heads_after": sum(after), "heads_per_layer": after},
        checks={"heads_removed": n_removed, "fraction_removed": round(n_removed / sum(counts), 4),
                "importance": [[round(float(x), 4) for x in row[:c]] for row, c in zip(importance, counts)]},
    )


METHOD = CompressionMethod(
    name="prune-heads", options=PruneHeadsOptions, apply=apply, recoverable=True, generative=False,
    description="remove the least important attention heads of a BERT-style encoder (Michel et al. 2019)",
)

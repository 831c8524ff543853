"""Prompt-learning methods (prompt, p-tuning, prefix) on a causal language model.

peft gives each row of a batch its own virtual tokens, and ignores (prompt tuning) or shifts
(prefix tuning) position ids. A packed row of the generation task (several examples end to end,
position ids restarting at each, no attention mask) would therefore share one prompt among its
examples and attend across them. A forward pre-hook turns such a row back into one right-padded
row per example before peft sees it, and widens a boolean `logits_to_keep` by the virtual tokens
prompt tuning puts in front of the input. The kept logits come back flat in the same order as
before (example by example, position by position), so the task's loss and outputs are unchanged.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch


def unpack_for_virtual_tokens(model: torch.nn.Module) -> None:
    """Register the hook on a peft causal-LM model trained by a prompt-learning method."""
    config = model.active_peft_config
    if config.task_type != "CAUSAL_LM" or not config.is_prompt_learning:
        return
    prepended = 0 if config.peft_type == "PREFIX_TUNING" else config.num_virtual_tokens  # prefix: keys/values only
    model.register_forward_pre_hook(partial(_unpacked, prepended=prepended), with_kwargs=True)


def _unpacked(model, args: tuple, kwargs: dict[str, Any], prepended: int) -> tuple[tuple, dict[str, Any]]:
    keep = kwargs.get("logits_to_keep")
    if kwargs.get("position_ids") is not None and kwargs.get("input_ids") is not None:
        kwargs = {**kwargs, **padded_rows(kwargs["input_ids"], kwargs["position_ids"], keep)}
        keep = kwargs["logits_to_keep"]
    if prepended and _is_mask(keep):
        kwargs = {**kwargs, "logits_to_keep": torch.cat([keep.new_zeros(keep.shape[0], prepended), keep], dim=1)}
    return args, kwargs


def padded_rows(input_ids: torch.Tensor, position_ids: torch.Tensor, keep: Any) -> dict[str, Any]:
    """One right-padded row per example of packed rows (an example starts where its position id is 0)."""
    pieces = []
    for r in range(input_ids.shape[0]):
        starts = (position_ids[r] == 0).nonzero().flatten().tolist() + [input_ids.shape[1]]
        pieces += [(r, s, e) for s, e in zip(starts, starts[1:])]
    width = max(e - s for _, s, e in pieces)
    ids = input_ids.new_zeros(len(pieces), width)
    attention = torch.zeros_like(ids)
    kept = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    for i, (r, s, e) in enumerate(pieces):
        ids[i, : e - s] = input_ids[r, s:e]
        attention[i, : e - s] = 1
        if _is_mask(keep):
            kept[i, : e - s] = keep[r, s:e]
    return {"input_ids": ids, "attention_mask": attention, "position_ids": None,
            "logits_to_keep": kept if _is_mask(keep) else keep}


def _is_mask(keep: Any) -> bool:
    return torch.is_tensor(keep) and keep.dtype == torch.bool

"""Shims between the installed peft and transformers, kept in one place so each can be dropped
when the libraries agree again.

transformers 5.24 renamed the encoders' `past_key_values` argument to `cache` (the old name still
works, through a deprecation wrapper). peft 0.21's prefix tuning looks for the old name in the
backbone's forward *signature* before passing the prefix, and refuses the model when it is
missing, although the call itself would work. We give the backbone a forward that takes the old
name and hands it on under the new one, so prefix tuning runs on both sides of the rename.
"""
from __future__ import annotations

import inspect
import types

import torch


def _forward_taking_past_key_values(self, *args, past_key_values=None, **kwargs):
    # A bound method (not a closure over the module), so copy.deepcopy rebinds it to the copy.
    if past_key_values is not None:
        kwargs["cache"] = past_key_values
    return type(self).forward(self, *args, **kwargs)


def accept_past_key_values(peft_model: torch.nn.Module) -> torch.nn.Module:
    """Let a prompt-learning peft model pass its prefix to a backbone that calls it `cache`."""
    backbone_name = getattr(peft_model, "transformer_backbone_name", None)
    if backbone_name is None:
        return peft_model
    backbone = peft_model.base_model.get_submodule(backbone_name)
    params = inspect.signature(backbone.forward).parameters
    if "past_key_values" not in params and "cache" in params:
        backbone.forward = types.MethodType(_forward_taking_past_key_values, backbone)
    return peft_model

"""Fine-tuning methods: one module each, registered here by one line.

A method is a pydantic options model (its `name` field is the discriminator used in YAML) and one
function that turns a freshly loaded model into the model to train. Adding a method never edits
the training loop.
"""
from __future__ import annotations

from paretune.errors import UnknownNameError
from paretune.methods import adalora, adapter, freeze, full, ia3, lora, p_tuning, prefix, prompt, qlora
from paretune.methods import combined, few_shot, zero_shot
from paretune.methods.base import Method

# The registry. Order matters only for the default: the first entry is used when `method` is omitted.
METHODS: dict[str, Method] = {m.name: m for m in (
    full.METHOD, freeze.METHOD, lora.METHOD, qlora.METHOD, adalora.METHOD, ia3.METHOD,
    prefix.METHOD, prompt.METHOD, p_tuning.METHOD, adapter.METHOD,
    few_shot.METHOD, zero_shot.METHOD, combined.ENSEMBLE, combined.SOUP,
)}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError(f"unknown method '{name}'; available: {', '.join(METHODS)}") from None


def method_options_types() -> tuple[type, ...]:
    return tuple(m.options for m in METHODS.values())

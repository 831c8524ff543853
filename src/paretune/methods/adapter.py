"""Bottleneck adapters (Houlsby et al. 2019): small residual MLPs inside every transformer block.

An adapter maps a sublayer's output h to h + up(act(down(h))), with `down` projecting to
hidden/reduction_factor dimensions. `houlsby` placement puts one after the attention output
projection and one after the feed-forward output projection, before dropout, the residual
connection and the layer norm, as in the paper; `pfeiffer` (Pfeiffer et al. 2021) keeps only the
feed-forward one, half the parameters for about the same accuracy. The up-projection starts at
zero, so training starts from the pretrained model. The pretrained weights stay frozen; the
adapters and the task head train.

Written here rather than taken from a library: the maintained one (AdapterHub's `adapters`,
1.3.0) pins transformers ~=4.57 and does not import beside transformers 5, and peft has no
bottleneck adapter. As STYLE.md asks, the adapter wraps modules found by name (targets.py): it is
a child module of the projection it follows, run by a forward hook, so the projection keeps its
parameter names and the frozen base still saves as a plain transformers checkpoint.

Adapters are non-linear, so they cannot be merged into the weights: `export --merge` refuses,
and the run's model/ folder holds the frozen base plus the adapter files written here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from paretune.errors import ParetuneError
from paretune.methods import targets
from paretune.methods.base import Method, MethodContext, MethodOptions

CONFIG_FILE = "bottleneck_config.json"
WEIGHTS_FILE = "bottleneck_model.safetensors"
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh, "swish": torch.nn.SiLU}
PLACEMENTS = {"houlsby": ("attention_output", "ffn_output"), "pfeiffer": ("ffn_output",)}


class AdapterOptions(MethodOptions):
    name: Literal["adapter"] = "adapter"
    placement: Literal["houlsby", "pfeiffer"] = Field(
        "houlsby", description="houlsby: after attention and feed-forward; pfeiffer: after feed-forward only."
    )
    reduction_factor: int = Field(16, ge=1, description="Bottleneck width = hidden size / reduction_factor.")
    activation: Literal["relu", "gelu", "tanh", "swish"] = "relu"
    target_modules: list[str] | None = Field(
        None, description="Layer-name suffixes to put an adapter after; overrides `placement`."
    )


class Bottleneck(torch.nn.Module):
    def __init__(self, width: int, size: int, activation: str):
        super().__init__()
        self.activation = activation  # its name, for saving
        self.down = torch.nn.Linear(width, size)
        self.act = ACTIVATIONS[activation]()
        self.up = torch.nn.Linear(size, width)
        torch.nn.init.zeros_(self.up.weight)  # start as the identity
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))


def _run_bottleneck(layer: torch.nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return layer.bottleneck(output)


def add_bottlenecks(model: torch.nn.Module, sizes: dict[str, int], activation: str) -> None:
    """Hang a Bottleneck of the given size after each named projection."""
    modules = dict(model.named_modules())
    for name, size in sizes.items():
        layer = modules[name]
        weight = layer.weight
        layer.bottleneck = Bottleneck(_width(layer), size, activation).to(weight.device, weight.dtype)
        layer.register_forward_hook(_run_bottleneck)


def _width(layer: torch.nn.Module) -> int:
    return getattr(layer, "out_features", None) or layer.nf  # nn.Linear, or GPT-2's Conv1D


def apply(model: torch.nn.Module, options: AdapterOptions, context: MethodContext) -> torch.nn.Module:
    names = targets.resolve(model, PLACEMENTS[options.placement], options.target_modules)
    modules = dict(model.named_modules())
    model.requires_grad_(False)
    sizes = {name: max(1, _width(modules[name]) // options.reduction_factor) for name in names}
    add_bottlenecks(model, sizes, options.activation)  # new parameters: trainable
    for head in targets.head_modules(model):
        model.get_submodule(head).requires_grad_(True)
    return model


# --- saving and loading: the adapter form, as stored/bottleneck.py and adapter/ use it --
def bottlenecks(model: torch.nn.Module) -> dict[str, Bottleneck]:
    """The adapters in a model, by the name of the projection each follows."""
    return {name: module.bottleneck for name, module in model.named_modules()
            if isinstance(getattr(module, "bottleneck", None), Bottleneck)}


def base_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights without the adapters: a plain transformers checkpoint."""
    return {k: v for k, v in model.state_dict().items() if ".bottleneck." not in k}


def save_bottlenecks(model: torch.nn.Module, folder: Path) -> None:
    """Adapters plus every other trainable parameter (the head): small, and enough with the base."""
    from safetensors.torch import save_file

    found = bottlenecks(model)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "method": "adapter",
        "base_model_name_or_path": getattr(model, "name_or_path", None),
        "activation": next(iter(found.values())).activation,
        "sizes": {name: b.down.out_features for name, b in found.items()},
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(folder / WEIGHTS_FILE))


def load_bottlenecks(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """Add the adapters saved in `folder` to a base model and load their (and the head's) weights."""
    from safetensors.torch import load_file

    config = json.loads((folder / CONFIG_FILE).read_text())
    add_bottlenecks(model, config["sizes"], config["activation"])
    saved = load_file(str(folder / WEIGHTS_FILE))
    params = dict(model.named_parameters())
    unknown = sorted(set(saved) - set(params))
    missing = sorted(n for n in params if ".bottleneck." in n and n not in saved)
    if unknown or missing:
        raise ParetuneError(f"{folder / WEIGHTS_FILE} does not fit this model: "
                            f"unknown {unknown[:3]}, missing {missing[:3]}")
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    return model


METHOD = Method("adapter", AdapterOptions, apply, "bottleneck adapters after attention and FFN (Houlsby)",
                lr_scale=10.0)

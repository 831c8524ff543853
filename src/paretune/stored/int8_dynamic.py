"""int8-dynamic: PyTorch dynamic int8 Linear layers, stored as plain tensors (CPU only).

One safetensors file holds each quantized layer's int8 weight, scale(s), zero point(s) and fp32
bias, and every other tensor as it was. Quantized PyTorch modules keep their weights in packed
objects that safetensors cannot hold, so loading rebuilds the model from config.json, quantizes
it the same way (`quantize`, with the recorded "per_channel") and sets these weights into it.
Nothing is unpickled. PyTorch's dynamic int8 kernels exist for CPUs only.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from paretune.errors import ParetuneError
from paretune.methods.layers import base_model
from paretune.stored.base import WEIGHTS_FILE, StoredForm
from paretune.stored.pruned_heads import empty_model

NAME = "int8-dynamic"


def quantized_linear():
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


def quantize(model: torch.nn.Module, per_channel: bool, inplace: bool = False) -> torch.nn.Module:
    """Dynamically quantize every Linear of the model body (not the task head)."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    if torch.backends.quantized.engine == "none":
        raise ParetuneError("this PyTorch build has no quantized CPU engine (fbgemm/x86/qnnpack) for int8")
    body = base_model(model)
    prefix = next((name + "." for name, module in model.named_modules() if module is body and name), "")
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {prefix + name: qconfig for name, module in body.named_modules() if isinstance(module, torch.nn.Linear)}
    model = model.float().eval()
    with warnings.catch_warnings():
        # torch.ao eager quantization is marked for migration to torchao; it remains the one
        # CPU int8 path that ships with torch itself, and it is what this form is defined by.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, qconfig_spec=spec, dtype=torch.qint8, inplace=inplace)


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors for safetensors: int8 weights with scales for quantized layers, the rest as is."""
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, quantized_linear())}
    tensors: dict[str, torch.Tensor] = {}
    for name, module in quantized.items():
        weight, bias = module._weight_bias()
        tensors[f"{name}.weight"] = weight.int_repr()
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            tensors[f"{name}.weight_scale"] = weight.q_per_channel_scales().float()
            tensors[f"{name}.weight_zero_point"] = weight.q_per_channel_zero_points().to(torch.int32)
        else:
            tensors[f"{name}.weight_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float32)
            tensors[f"{name}.weight_zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int32)
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach()
    for key, value in model.state_dict().items():
        if isinstance(value, torch.Tensor) and not any(key.startswith(n + ".") for n in quantized):
            tensors[key] = value
    return {k: v.detach().contiguous().clone() for k, v in tensors.items()}


def save(model: torch.nn.Module, model_dir: Path, settings: dict[str, Any]) -> None:
    save_file(state_tensors(model), str(Path(model_dir) / WEIGHTS_FILE), metadata={"format": "pt"})
    model.config.save_pretrained(model_dir)


def load(model_dir: Path, auto_class, device=None, recorded=None, **kwargs) -> torch.nn.Module:
    tensors = load_file(str(Path(model_dir) / WEIGHTS_FILE))
    layers = [key[: -len(".weight_scale")] for key in tensors if key.endswith(".weight_scale")]
    packed = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same torch.ao deprecation notice as in quantize()
        for name in layers:
            packed[name] = (_qweight(tensors, name), tensors.pop(f"{name}.bias", None))
            for suffix in ("weight", "weight_scale", "weight_zero_point"):
                tensors.pop(f"{name}.{suffix}")
    # The fp32 tensors go in before quantizing: quantized modules only load their own packed state.
    model = empty_model(model_dir, auto_class, **kwargs)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k.rpartition(".")[0] not in packed]
    if missing or unexpected:
        raise ParetuneError(f"{model_dir / WEIGHTS_FILE} does not fit its config.json: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}")
    model = quantize(model, (recorded or {}).get("per_channel", False), inplace=True)
    modules = dict(model.named_modules())
    for name, (weight, bias) in packed.items():
        if not isinstance(modules.get(name), quantized_linear()):
            raise ParetuneError(f"{model_dir / WEIGHTS_FILE}: layer {name} is stored as int8 but is not a "
                                "Linear layer of this architecture")
        modules[name].set_weight_bias(weight, bias)
    return model.eval()


def _qweight(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    ints = tensors[f"{name}.weight"]
    scale = tensors[f"{name}.weight_scale"].double()
    zero = tensors[f"{name}.weight_zero_point"].long()
    if scale.numel() == 1:
        values = (ints.float() - float(zero)) * float(scale)
        return torch.quantize_per_tensor(values, float(scale), int(zero), torch.qint8)
    values = (ints.float() - zero[:, None].float()) * scale[:, None].float()
    return torch.quantize_per_channel(values, scale, zero, 0, torch.qint8)


FORM = StoredForm(
    name=NAME, save=save, load=load, devices=lambda: ("cpu",), plain_transformers=False, counts_parameters=False,
    device_hint="a int8-dynamic model runs on the CPU only; load it with device='cpu' "
                "(or compress with fp16/bf16 or onnx for a GPU)",
    description="int8 Linear weights with their scales in safetensors (PyTorch dynamic quantization)",
    use="int8 weights in safetensors: load with paretune's Predictor (CPU), not plain transformers",
)

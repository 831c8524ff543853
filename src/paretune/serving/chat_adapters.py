"""Several LoRA runs over one base model in memory: `paretune serve RUN_A RUN_B ...`.

Each run keeps its unmerged adapter (the run folder's adapter/, written by training) on one copy of
the base model, through peft's multi-adapter support; a request's `model` names the run, and the
engine sends each row of a mixed batch through its own adapter (peft's `adapter_names`). Memory is
the base plus the adapters (kilobytes to a few MB each) instead of one merged copy per run.

Every run must be a generative LoRA run trained on the same base (the same `model.name_or_path`)
with the same vocabulary; anything else is refused at start, naming the run and what differs. Each
run keeps its own chat template and system prompt: prompts are built with its own task and
tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paretune.errors import ParetuneError

ADAPTER_DIR = "adapter"  # in a run folder (stored/trained.py)
MIXED_BATCH_TYPES = ("LORA",)  # peft methods whose rows may each take their own adapter


@dataclass
class ServedModel:
    """One name a request's `model` may give: its adapter, and how its prompts are built."""

    name: str
    adapter: str | None  # None: the loaded model itself
    task: Any
    tokenizer: Any
    chat: bool  # the run renders conversations with its chat template


def served_model(name: str, adapter: str | None, task, tokenizer) -> ServedModel:
    return ServedModel(name, adapter, task, tokenizer, task.prepare_tokenizer(tokenizer))


def load_adapter_runs(run_dirs: list[Path], device: str | None = None):
    """A Predictor over the shared base with every run's adapter, and the models it serves (by run
    folder name, in the order given)."""
    import peft

    from paretune.models import load_model, model_source
    from paretune.predictor import Predictor
    from paretune.run_folder import TASK_FILE, RunFolder
    from paretune.tasks import task_class

    runs = [_checked_run(Path(d)) for d in run_dirs]
    names = [run.path.name for run, _ in runs]
    if len(set(names)) != len(names):
        raise ParetuneError(f"serve: two runs share a folder name ({', '.join(names)}); requests pick a run by "
                            "its folder name, so each must be different")
    sources = {model_source(config.model, config.task) for _, config in runs}
    if len(sources) > 1:
        raise ParetuneError("serve: the runs were trained on different base models ("
                            + "; ".join(f"{run.path.name}: {model_source(c.model, c.task)}" for run, c in runs)
                            + "); several runs share one server only as adapters over the same base: serve "
                              "each on its own")
    first_run, first_config = runs[0]
    first_task = task_class(first_config.task.type)(first_config.task, [])
    base_options = first_config.model.model_copy(update={"dtype": "float32"})  # as the merged model loads
    model = load_model(base_options, first_task)
    served = []
    for i, (run, config) in enumerate(runs):
        adapter_dir = run.path / ADAPTER_DIR
        if i == 0:
            model = peft.PeftModel.from_pretrained(model, adapter_dir, adapter_name=run.path.name)
        else:
            model.load_adapter(adapter_dir, adapter_name=run.path.name)
        task = task_class(config.task.type)(config.task, [])
        tokenizer = task.load_preprocessor(str(run.model_dir), config.task)
        served.append(served_model(run.path.name, run.path.name, task, tokenizer))
    _check_vocabularies(served)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(target).eval()
    info = json.loads((first_run.model_dir / TASK_FILE).read_text())
    predictor = Predictor(model, served[0].tokenizer, served[0].task, info["max_length"], target, first_run.path)
    return predictor, served


def _checked_run(run_dir: Path):
    from paretune.run_folder import RunFolder
    from paretune.tasks import task_class

    run = RunFolder.open(run_dir)
    config = run.read_config()
    if not task_class(config.task.type).generates:  # SFT and preference runs alike
        raise ParetuneError(f"serve {run_dir}: a {config.task.type} run; several runs are served together only "
                            "when each is a generative LoRA run")
    adapter_config = run.path / ADAPTER_DIR / "adapter_config.json"
    if not adapter_config.is_file():
        raise ParetuneError(f"serve {run_dir}: method {config.method.name} left no adapter ({adapter_config} "
                            "missing); several runs are served together only as LoRA adapters over one base")
    peft_type = json.loads(adapter_config.read_text()).get("peft_type")
    if peft_type not in MIXED_BATCH_TYPES:
        raise ParetuneError(f"serve {run_dir}: a {peft_type} adapter; several runs share one base only as LoRA "
                            "adapters (each row of a batch through its own adapter)")
    if not (run.path / ADAPTER_DIR / "adapter_model.safetensors").is_file():
        raise ParetuneError(f"serve {run_dir}: {ADAPTER_DIR}/adapter_model.safetensors missing (paretune loads "
                            "weights only from safetensors)")
    return run, config


def _check_vocabularies(served: list[ServedModel]) -> None:
    first = served[0].tokenizer.get_vocab()
    for model in served[1:]:
        if model.tokenizer.get_vocab() != first:
            raise ParetuneError(f"serve: run {model.name} has another vocabulary than {served[0].name}; runs "
                                "served over one base must share its tokenizer")


def load_adapter_runs_checked(run_dirs: list[Path], device: str | None = None):
    """`load_adapter_runs`'s Predictor, with its served models attached, and any unexpected failure
    turned into one error naming the runs."""
    try:
        predictor, served = load_adapter_runs(run_dirs, device)
    except ParetuneError:
        raise
    except Exception as err:  # broken weights or adapters: one error naming the runs
        raise ParetuneError(f"cannot serve {', '.join(map(str, run_dirs))}: loading the shared base and "
                            f"adapters failed with {type(err).__name__}: {err}") from err
    predictor.served_models = served  # read by serving/chat_runner.py
    return predictor

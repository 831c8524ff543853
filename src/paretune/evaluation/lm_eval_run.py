"""`paretune eval RUN --lm-eval TASKS`: lm-evaluation-harness on a run's model, with local tasks.

Tasks are YAML files (and the data files they name) on this machine: no hub dataset is fetched.
TASKS is a comma-separated list of task names found in the shipped folder (`lm_eval_tasks/`,
e.g. `paretune_capitals`), YAML files or folders of them. Only those folders are indexed
(lm-eval's hundreds of built-in tasks need hub datasets, and indexing them costs seconds).

The model is the run's model/ folder, given to lm-eval's `hf` model by path exactly as
`lm_eval --model hf --model_args pretrained=RUN/model,dtype=float32` would load it, so the scores
are the command's (tests/test_lm_eval.py compares them); a stored form that transformers cannot
load alone (an adapter over base/, int8) is loaded by paretune and handed over as a model object.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from paretune.errors import ParetuneError

SHIPPED_TASKS = Path(__file__).resolve().parent / "lm_eval_tasks"
INSTALL = 'pip install "paretune[lm-eval]"'


def task_sources(tasks: str) -> tuple[list[str], list[Path]]:
    """(task names, folders to index) for a TASKS argument."""
    names, folders = [], [SHIPPED_TASKS]
    for item in (part.strip() for part in tasks.split(",")):
        if not item:
            continue
        path = Path(item).expanduser()
        if path.suffix in (".yaml", ".yml"):
            if not path.is_file():
                raise ParetuneError(f"--lm-eval: {path} does not exist")
            names.append(_task_name(path))
            folders.append(path.resolve().parent)
        elif path.is_dir():
            found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
            if not found:
                raise ParetuneError(f"--lm-eval: {path} holds no task YAML file")
            names += [_task_name(f) for f in found]
            folders.append(path.resolve())
        else:
            names.append(item)  # a task name, in the shipped folder or one given above
    if not names:
        raise ParetuneError("--lm-eval: name at least one task (e.g. paretune_capitals) or a task YAML file")
    return names, list(dict.fromkeys(folders))


def _task_name(path: Path) -> str:
    """The `task:` of a task YAML (read as text: its `!function` tags are lm-eval's to resolve)."""
    found = re.search(r"^task:\s*['\"]?([\w.\-]+)", path.read_text(encoding="utf-8"), re.MULTILINE)
    if not found:
        raise ParetuneError(f"--lm-eval: {path} has no 'task:' name (a group file? name its tasks instead)")
    return found.group(1)


def run_lm_eval(model: Any, tasks: str, *, tokenizer=None, device: str = "cpu", batch_size: int = 8,
                limit: int | None = None, num_fewshot: int | None = None) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from lm-eval's `simple_evaluate`. `model` is a model folder
    (loaded by lm-eval's `hf` model, in float32 as paretune trains) or a loaded transformers model
    (then `tokenizer` is required)."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ParetuneError(f"--lm-eval needs lm-evaluation-harness: {INSTALL}") from None
    names, folders = task_sources(tasks)
    manager = TaskManager(include_path=[str(f) for f in folders], include_defaults=False)
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        raise ParetuneError(f"--lm-eval: unknown task(s) {', '.join(unknown)}; local tasks: "
                            f"{', '.join(sorted(manager.all_tasks)) or 'none'} (or give a task YAML file)")
    if isinstance(model, (str, Path)):
        lm, args = "hf", {"pretrained": str(model), "dtype": "float32", "device": device, "batch_size": batch_size}
    else:
        from lm_eval.models.huggingface import HFLM

        lm, args = HFLM(pretrained=model, tokenizer=tokenizer, device=device, batch_size=batch_size), None
    output = simple_evaluate(model=lm, model_args=args, tasks=names, task_manager=manager, limit=limit,
                             num_fewshot=num_fewshot, log_samples=False, bootstrap_iters=0)
    return scores(output)


def scores(output: dict) -> dict[str, dict[str, float]]:
    """lm-eval's results without its stderr entries and aliases: {task: {metric: value}}
    (its keys carry the filter, `acc,none`: the default filter's is dropped)."""
    found = {}
    for task, metrics in output["results"].items():
        found[task] = {key.removesuffix(",none"): value for key, value in metrics.items()
                       if isinstance(value, (int, float)) and "_stderr" not in key}
    return found

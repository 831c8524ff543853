"""The run's README.md: a model card a person reads, with the numbers that matter."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paretune.config.schema import Config
from paretune.evaluation.general_eval import card_lines as forgetting_lines
from paretune.model_card import generative
from paretune.model_card.costs import cost_lines, device_text, inference_lines, usd_text  # noqa: F401 (usd_text: API)
from paretune.models import portable_model_id, portable_model_name
from paretune.run_folder import RunFolder

HEADLINE = ("accuracy", "f1", "f1_macro", "f1_micro", "precision", "recall", "exact_match", "contains",
            "perplexity", "mse", "mae", "r2", "mrr", "hits@1", "hits@10", "loss")


def _metric_rows(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for split in ("validation", "test"):
        values = metrics.get(split)
        if not values:
            continue
        shown = [f"{k} {values[k]:.4f}" for k in HEADLINE if isinstance(values.get(k), (int, float))]
        rows.append(f"| {split} | {', '.join(shown)} |")
    return rows


def write_model_card(run: RunFolder, config: Config, metrics: dict, cost: dict, base_model: str) -> None:
    """README.md of a trained run, and of its adapter folders (peft writes a template naming the
    base model by its absolute path: replaced here). Cards travel with the folder, so they name
    nothing by a path of this machine (models.portable_model_name)."""
    lines = [
        f"# {run.path.name}",
        "",
        f"Fine-tuned with paretune from `{portable_model_name(base_model)}` for **{config.task.type}** "
        f"with method **{config.method.name}**.",
        "",
        "| split | metrics |",
        "| --- | --- |",
        *_metric_rows(metrics),
        "",
        (generative.prompt_line(run.model_dir, config) if generative.generates(config) else
         f"- labels: {', '.join(map(str, metrics.get('labels', []) or [])) or 'see model/config.json'}"),
        *forgetting_lines(metrics.get("forgetting")),  # data.general_eval: base -> tuned
        _stored_line(run),
        f"- trainable parameters: {metrics['trainable_params']:,} of {metrics['total_params']:,} "
        f"({metrics['trainable_percent']:.2f}%)",
        f"- steps: {metrics['steps']} ({metrics['epochs']} epochs), peak lr {metrics['lr']:.2e}, "
        f"best {metrics['metric']} at step {metrics['best_step']}",
        f"- device: {device_text(cost)}, precision {precision_name(cost.get('precision'))}",
        f"- wall time: {cost['wall_s']:.1f} s (train {cost['phases_s'].get('train_s', 0):.1f} s), "
        f"{cost['train_samples_per_s']:.1f} train samples/s, padding {cost['padding_fraction']:.1%}",
        f"- training data: `{_portable_path(config.data.train)}`",
        "",
        *cost_lines(cost),
        *_lineage_lines(run.path),
        *inference_lines(run.path),
        *_run_usage(run, config),
        "Files: `config.yaml` (resolved config), `metrics.json`, `metrics.jsonl` (per evaluation), "
        "`cost.json`, `inference.json` (after `paretune bench-infer`), `environment.json`, `data.json`, "
        "`model/` (safetensors).",
        "",
    ]
    (run.path / "README.md").write_text("\n".join(lines), encoding="utf-8")
    from paretune.stored import BASE_DIR, form_of
    from paretune.stored.trained import ADAPTER_DIR

    if (run.path / ADAPTER_DIR).is_dir():
        write_adapter_card(run.path / ADAPTER_DIR, run, f"{run.path.name}/{ADAPTER_DIR}")
    if form_of(run.model_dir).over_base:  # model/ is the adapter beside its frozen base
        write_adapter_card(run.model_dir, run, f"{run.path.name}/model", base=f"{run.path.name}/model/{BASE_DIR}")


def _stored_line(run: RunFolder) -> str:
    """How model/ stores its weights: the form, and the precision where it is not the training's fp32."""
    from paretune.stored import form_of, recorded_form

    dtype = recorded_form(run.model_dir).get("dtype")
    stored = f", stored in {dtype} (the base model's precision; loaded as float32)" if dtype else ""
    return f"- `model/`: {form_of(run.model_dir).description}{stored}"


def _lineage_lines(run_path: Path) -> list[str]:
    """Where a continued run came from (lineage.json, written by `train --from`) and what it forgot."""
    file = run_path / "lineage.json"
    if not file.is_file():
        return []
    lineage = json.loads(file.read_text())
    chain = " -> ".join(f"`{Path(step['run']).name}`" for step in lineage.get("chain", []))
    old = lineage.get("old_task") or {}
    before, after = (old.get(k) or {} for k in ("before", "after"))
    scores = ", ".join(f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in before
                       if k != "loss" and isinstance(before.get(k), (int, float)) and isinstance(after.get(k), (int, float)))
    return ["## Lineage", "", f"Continued from: {chain} -> `{run_path.name}`",
            f"- strategy: {lineage.get('strategy')}", f"- labels added: {lineage.get('labels_added') or 'none'}",
            f"- old task (`{Path(str(old.get('data'))).name}`): {scores or 'not scored'}", ""]


def refresh_model_card(run: RunFolder) -> None:
    """Rewrite a finished run's card from its files (after bench-infer adds inference.json)."""
    from paretune.models import model_source

    config = run.read_config()
    metrics = run.read_json("metrics.json")
    if "steps" not in metrics:  # not trained by the loop (an ensemble, a soup, few-/zero-shot): its own card stays
        return
    write_model_card(run, config, metrics, run.read_json("cost.json"), model_source(config.model))


def precision_name(value: str | None) -> str:
    """The precision trained in: accelerate calls fp32 "no" (no mixed precision), cost.json kept that."""
    return {"no": "fp32", None: "unknown"}.get(value, value)


def _portable_path(value: str | None) -> str:
    """A data file by its name alone (its folder is this machine's); dataset ids as they are."""
    if not value:
        return "-"
    path = Path(value).expanduser()
    return path.name if path.is_absolute() or path.exists() else value


def _auto_class(config: Config) -> str:
    from paretune.tasks import task_class

    return task_class(config.task.type).auto_model


def _transformers_lines(config: Config, folder: str, load: str, trust: str, chat: bool = False) -> list[str]:
    """Tokenize one text and read the prediction from the logits (a generative run: generate an
    answer, through the chat template when it has one), the same for every snippet."""
    from paretune.tasks import task_class

    if generative.generates(config):
        return [f'tokenizer = AutoTokenizer.from_pretrained("{folder}"{trust})', load, *generative.generate_lines(config, chat)]
    task = task_class(config.task.type)
    read = task.read_logits.format(**config.task.model_dump())
    # A model without a head (AutoModel) answers hidden states; read_logits says how to pool them.
    output = "" if task.auto_model == "AutoModel" else ".logits"
    return [
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}"{trust})',
        load,
        f'{"output" if not output else "logits"} = model(**tokenizer(["some text"], return_tensors="pt")){output}',
        read,
    ]


def _run_usage(run: RunFolder, config: Config) -> list[str]:
    from paretune.tasks import task_class

    name, auto = run.path.name, _auto_class(config)
    trust = config.model.trust_remote_code  # the model needs its own code: say so where it is loaded
    flag, arg = (" --trust-remote-code", ", trust_remote_code=True") if trust else ("", "")
    if task_class(config.task.type).takes_images:
        return _image_usage(run, config, flag, arg)
    generates = generative.generates(config)
    where = ("prompts as rows of `prompt`, `messages` or `instruction`" if generates
             else f"texts in a `{config.data.text_column}` column")
    commands = (generative.commands(name, flag) if generates
                else [f"paretune predict {name} --input texts.csv --output predictions.jsonl{flag}"])
    lines = [
        "## Use",
        "",
        f"From the folder that holds `{name}/`, with paretune ({where}):",
        "",
        "```bash",
        *commands,
        "```",
        "",
        "```python",
        "from paretune import Predictor",
        f'predictor = Predictor.load("{name}"{arg})',
        'predictor.predict(["some text"])',
        "```",
        "",
    ]
    from paretune.stored import BASE_DIR, form_of

    if form_of(run.model_dir).over_base:
        return lines + [f"`model/` holds the adapter over its frozen base `model/{BASE_DIR}/`: "
                        "to load it with transformers, see `model/README.md`.", ""]
    return lines + [
        "With plain transformers (`model/` is a standard Hugging Face model folder):",
        "",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        "",
        *_transformers_lines(config, f"{name}/model",
                             f'model = {auto}.from_pretrained("{name}/model"{arg})', arg, generative.uses_chat_template(run.model_dir, config)),
        "```",
        "",
    ]


def _image_usage(run: RunFolder, config: Config, flag: str, arg: str) -> list[str]:
    """An image run: predict over a folder, serve uploads, or transformers' AutoImageProcessor
    (model/preprocessor_config.json holds the resize and normalization evaluation used)."""
    from paretune.stored import BASE_DIR, form_of
    from paretune.tasks import task_class

    name, form = run.path.name, form_of(run.model_dir)
    lines = [
        "## Use",
        "",
        f"From the folder that holds `{name}/`, with paretune (a folder of images, a .txt list of image "
        f"paths, or a table with an `{config.task.image_column}` column):",
        "",
        "```bash",
        f"paretune predict {name} --input photos/ --output predictions.jsonl{flag}",
        f"paretune serve {name} --api-key-file keys.txt{flag}",
        'curl -H "Authorization: Bearer $KEY" -F images=@photo.jpg http://127.0.0.1:8000/v1/predict-images',
        "```",
        "",
        "```python",
        "from paretune import Predictor",
        f'predictor = Predictor.load("{name}"{arg})',
        'predictor.predict(["photo.jpg"])',
        "```",
        "",
    ]
    if form.over_base:
        return lines + [f"`model/` holds the adapter over its frozen base `model/{BASE_DIR}/`: "
                        "to load it with transformers, see `model/README.md`.", ""]
    model_type = json.loads((run.model_dir / "config.json").read_text()).get("model_type", "") \
        if (run.model_dir / "config.json").is_file() else ""
    register = (["import paretune.backbones.efficientnet_lite  # registers the packaged backbone with transformers"]
                if model_type.startswith("paretune-") else [])
    read = task_class(config.task.type).read_logits.format(**config.task.model_dump())
    return lines + [
        "With plain transformers (`model/` is a standard Hugging Face model folder):",
        "",
        "```python",
        "from PIL import Image",
        f"from transformers import {_auto_class(config)}, AutoImageProcessor",
        *register,
        "",
        f'processor = AutoImageProcessor.from_pretrained("{name}/model")',
        f'model = {_auto_class(config)}.from_pretrained("{name}/model"{arg})',
        'logits = model(**processor(Image.open("photo.jpg").convert("RGB"), return_tensors="pt")).logits',
        read,
        "```",
        "",
    ]


def write_adapter_card(folder: Path, run: RunFolder, location: str, base: str | None = None) -> None:
    """README.md of an adapter folder (a run's adapter/, an export): what it is, how well it does,
    and how to load it over its base model (`base`: default, the run's base model by portable id).
    `location` is how the usage snippet names `folder`."""
    from paretune.stored.peft_adapter import is_peft_folder

    config = run.read_config()
    metrics = run.read_json("metrics.json") if (run.path / "metrics.json").is_file() else {}
    base_name = portable_model_name(config.model.name_or_path)
    hub_base = None if _local_base(config) else portable_model_id(config.model.name_or_path)
    is_peft = is_peft_folder(folder)
    generates = generative.generates(config)
    answer = "paretune generate" if generates else "paretune predict"
    front = ["---", *(["library_name: peft"] if is_peft else []), *([f"base_model: {hub_base}"] if hub_base else []),
             f"tags: [paretune, {config.method.name}, {config.task.type}]", "---", ""]
    params = (f"- trainable parameters: {metrics['trainable_params']:,} of {metrics['total_params']:,} "
              f"({metrics['trainable_percent']:.2f}%)" if "trainable_params" in metrics else "")
    lines = [
        *front,
        f"# {run.path.name}: {config.method.name} adapter",
        "",
        f"A **{config.method.name}** adapter for **{config.task.type}**, trained with paretune over "
        f"`{base_name}`. It holds the adapter weights{'' if generates else ' and the trained task head'} alone: "
        "load it over the base model.",
        "",
        "| split | metrics |",
        "| --- | --- |",
        *_metric_rows(metrics),
        "",
        (generative.prompt_line(folder, config) if generates else
         f"- labels: {', '.join(map(str, metrics.get('labels', []) or [])) or 'see paretune.json'}"),
        *([params] if params else []),
        "",
        *_adapter_usage(config, location, base or portable_model_id(config.model.name_or_path), is_peft,
                        _labels(folder, config, metrics), generative.uses_chat_template(folder, config)),
        f"Or with paretune, on the run folder it came from: `{answer} {run.path.name} --input "
        f"{'prompts.jsonl --output answers.jsonl' if generates else 'texts.csv --output predictions.jsonl'}`.",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


def _labels(folder: Path, config: Config, metrics: dict) -> list:
    from paretune.run_folder import TASK_FILE

    if metrics.get("labels"):  # every task's label names, ["value"] for regression
        return list(metrics["labels"])
    info = folder / TASK_FILE
    return json.loads(info.read_text()).get("labels", []) if info.is_file() else []


def _local_base(config: Config) -> bool:
    source = config.model.name_or_path
    return source is not None and portable_model_id(source).startswith("path/to/")


def _adapter_usage(config: Config, location: str, base: str, is_peft: bool, labels: list, chat: bool) -> list[str]:
    auto = _auto_class(config)
    arg = ", trust_remote_code=True" if config.model.trust_remote_code else ""
    load = (f'model = PeftModel.from_pretrained(base, "{location}")' if is_peft
            else f'model = load_bottlenecks(base, Path("{location}"))')
    imports = (["from peft import PeftModel"] if is_peft
               else ["from pathlib import Path", "", "from paretune.methods.adapter import load_bottlenecks"])
    return [
        "## Use",
        "",
        "```python",
        *imports,
        f"from transformers import {auto}, AutoTokenizer",
        "",
        *([] if generative.generates(config) else [f"labels = {labels!r}"]),
        f'base = {auto}.from_pretrained("{base}"{_head_kwargs(config)}{arg})',
        *_transformers_lines(config, location, load, arg, chat),
        "```",
        "",
    ]


def _head_kwargs(config: Config) -> str:
    """A head the adapter's saved task head fits: its size, label names and problem type."""
    from paretune.tasks import task_class

    if generative.generates(config):  # the language-model head is the base's own
        return ""
    problem = task_class(config.task.type).problem_type
    return (", num_labels=len(labels), id2label=dict(enumerate(labels))"
            + (f', problem_type="{problem}"' if problem else ""))

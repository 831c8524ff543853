"""The run's README.md: a model card a person reads, with the numbers that matter."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from paretune.config.schema import Config
from paretune.models import portable_model_id, portable_model_name
from paretune.run_folder import RunFolder

HEADLINE = ("accuracy", "f1", "f1_macro", "f1_micro", "precision", "recall", "exact_match",
            "mse", "mae", "r2", "loss")


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
        f"- labels: {', '.join(map(str, metrics.get('labels', []) or [])) or 'see model/config.json'}",
        f"- trainable parameters: {metrics['trainable_params']:,} of {metrics['total_params']:,} "
        f"({metrics['trainable_percent']:.2f}%)",
        f"- steps: {metrics['steps']} ({metrics['epochs']} epochs), peak lr {metrics['lr']:.2e}, "
        f"best {metrics['metric']} at step {metrics['best_step']}",
        f"- device: {_device(cost)}, precision {precision_name(cost.get('precision'))}",
        f"- wall time: {cost['wall_s']:.1f} s (train {cost['phases_s'].get('train_s', 0):.1f} s), "
        f"{cost['train_samples_per_s']:.1f} train samples/s, padding {cost['padding_fraction']:.1%}",
        f"- training data: `{_portable_path(config.data.train)}`",
        "",
        *_cost_lines(cost),
        *_lineage_lines(run.path),
        *_inference_lines(run.path),
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


def _transformers_lines(config: Config, folder: str, load: str, trust: str) -> list[str]:
    """Tokenize one text and read the prediction from the logits, the same for every snippet."""
    from paretune.tasks import task_class

    read = task_class(config.task.type).read_logits.format(**config.task.model_dump())
    return [
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}"{trust})',
        load,
        'logits = model(**tokenizer(["some text"], return_tensors="pt")).logits',
        read,
    ]


def _run_usage(run: RunFolder, config: Config) -> list[str]:
    from paretune.tasks import task_class

    name, auto = run.path.name, _auto_class(config)
    trust = config.model.trust_remote_code  # the model needs its own code: say so where it is loaded
    flag, arg = (" --trust-remote-code", ", trust_remote_code=True") if trust else ("", "")
    if task_class(config.task.type).takes_images:
        return _image_usage(run, config, flag, arg)
    lines = [
        "## Use",
        "",
        f"From the folder that holds `{name}/`, with paretune (texts in a `{config.data.text_column}` column):",
        "",
        "```bash",
        f"paretune predict {name} --input texts.csv --output predictions.jsonl{flag}",
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
                             f'model = {auto}.from_pretrained("{name}/model"{arg})', arg),
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
    front = ["---", *(["library_name: peft"] if is_peft else []), *([f"base_model: {hub_base}"] if hub_base else []),
             f"tags: [paretune, {config.method.name}, {config.task.type}]", "---", ""]
    params = (f"- trainable parameters: {metrics['trainable_params']:,} of {metrics['total_params']:,} "
              f"({metrics['trainable_percent']:.2f}%)" if "trainable_params" in metrics else "")
    lines = [
        *front,
        f"# {run.path.name}: {config.method.name} adapter",
        "",
        f"A **{config.method.name}** adapter for **{config.task.type}**, trained with paretune over "
        f"`{base_name}`. It holds the adapter weights and the trained task head alone: load it over the base model.",
        "",
        "| split | metrics |",
        "| --- | --- |",
        *_metric_rows(metrics),
        "",
        f"- labels: {', '.join(map(str, metrics.get('labels', []) or [])) or 'see paretune.json'}",
        *([params] if params else []),
        "",
        *_adapter_usage(config, location, base or portable_model_id(config.model.name_or_path), is_peft,
                        _labels(folder, config, metrics)),
        f"Or with paretune, on the run folder it came from: `paretune predict {run.path.name} --input texts.csv "
        "--output predictions.jsonl`.",
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


def _adapter_usage(config: Config, location: str, base: str, is_peft: bool, labels: list) -> list[str]:
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
        f"labels = {labels!r}",
        f'base = {auto}.from_pretrained("{base}", {_head_kwargs(config)}{arg})',
        *_transformers_lines(config, location, load, arg),
        "```",
        "",
    ]


def _head_kwargs(config: Config) -> str:
    """A head the adapter's saved task head fits: its size, label names and problem type."""
    from paretune.tasks import task_class

    problem = task_class(config.task.type).problem_type
    return ("num_labels=len(labels), id2label=dict(enumerate(labels))"
            + (f', problem_type="{problem}"' if problem else ""))
def _device(cost: dict) -> str:
    name = f" ({cost['device_name']})" if cost.get("device_name") else ""
    return f"{cost['device']}{name} x{cost['device_count']}"


def _price_text(price: dict | None) -> str:
    if not price:
        return "no price set for this device, so no dollars (docs/cost.md: cost.price, --price)"
    if price.get("provider") == "user":
        return f"${price['usd_per_hour']:g} per device-hour, as given in {price['source']}"
    return (f"`{price['name']}`, ${price['usd_per_hour']:g} per device-hour: {price['provider']} "
            f"{price['instance']}, on-demand list price as of {price['date']} ({price['source']})")


def _cost_lines(cost: dict) -> list[str]:
    """Training cost; cost.json written before the cost meter lacks these keys, so all are optional."""
    if "flops" not in cost:
        return []
    usd = cost.get("usd")
    flops = cost["flops"]
    energy = cost.get("energy_kwh")
    return [
        "## Cost",
        "",
        f"- training: {cost['device_hours']:.3g} device-hours"
        + (f", **{usd_text(usd)}**" if usd is not None else ", dollars unknown (no price)"),
        f"- price: {_price_text(cost.get('price'))}",
        f"- compute: {_si(flops['train'])}FLOP estimated ({flops['trainable_params']:,} trainable and "
        f"{flops['frozen_params']:,} frozen weights, embeddings apart), {_si(flops['achieved_flops_per_s'])}"
        "FLOP/s achieved",
        f"- energy: {f'{energy:.4g} kWh (NVML)' if energy is not None else 'not metered on this device'}",
        f"- peak memory: host {cost['peak_host_rss_mib']:.0f} MiB"
        + (f", device {cost['peak_device_mib']:.0f} MiB" if cost.get("peak_device_mib") is not None else ""),
        "",
    ]


def _inference_lines(run_dir: Path) -> list[str]:
    path = run_dir / "inference.json"
    if not path.is_file():
        return ["Serving cost: run `paretune bench-infer` on this folder.", ""]
    bench = json.loads(path.read_text(encoding="utf-8"))
    latency, usd = bench["latency_ms"], bench.get("usd_per_million")
    return [
        "## Serving cost",
        "",
        f"Measured {bench['measured_at']} on {_device(bench)} ({bench.get('threads', '?')} threads):",
        "",
        f"- latency at batch 1: p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms, "
        f"p99 {latency['p99']:.2f} ms",
        f"- throughput: {bench['throughput_per_s']:.1f} predictions/s at batch {bench['throughput_batch_size']}",
        f"- model size {bench['size_mib']:.1f} MiB, peak memory {bench['peak_memory_mib']:.0f} MiB",
        f"- **{usd_text(usd)} per million predictions**" if usd is not None else "- dollars unknown (no price)",
        f"- price: {_price_text(bench.get('price'))}",
        "",
    ]


def usd_text(value: float) -> str:
    """Dollars with three significant digits, never in e-notation: $1,234.57, $0.0968, $0.0000968."""
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.{2 - math.floor(math.log10(value))}f}"


def _si(value: float) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "

"""The run's README.md: a model card a person reads, with the numbers that matter."""
from __future__ import annotations

from typing import Any

from paretune.config.schema import Config
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
    lines = [
        f"# {run.path.name}",
        "",
        f"Fine-tuned with paretune from `{base_model}` for **{config.task.type}** "
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
        f"- device: {cost['device']} x{cost['device_count']}, precision {cost['precision']}",
        f"- wall time: {cost['wall_s']:.1f} s (train {cost['phases_s'].get('train_s', 0):.1f} s), "
        f"{cost['train_samples_per_s']:.1f} train samples/s, padding {cost['padding_fraction']:.1%}",
        f"- training data: `{config.data.train}`",
        "",
        "## Use",
        "",
        "```python",
        "from paretune import Predictor",
        f"predictor = Predictor.load('{run.path}')",
        "predictor.predict(['some text'])",
        "",
        "# or with plain transformers",
        "from transformers import AutoModelFor"
        + ("TokenClassification" if config.task.type == "ner" else "SequenceClassification")
        + ", AutoTokenizer",
        f"model = AutoModelFor{'TokenClassification' if config.task.type == 'ner' else 'SequenceClassification'}"
        f".from_pretrained('{run.model_dir}')",
        "```",
        "",
        "Files: `config.yaml` (resolved config), `metrics.json`, `metrics.jsonl` (per evaluation), "
        "`cost.json`, `environment.json`, `data.json`, `model/` (safetensors).",
        "",
    ]
    (run.path / "README.md").write_text("\n".join(lines), encoding="utf-8")

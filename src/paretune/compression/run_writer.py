"""Write a compressed (or distilled) model as an ordinary run folder.

The new folder holds what `paretune train` writes (config.yaml, environment.json, data.json,
model/, metrics.json, cost.json, README.md) plus inference.json, so `paretune frontier`, the
server and `paretune eval` treat it like any other run. metrics.json gains a "compression" entry:

    {"parent": path, "method": name, "settings": {...}, "checks": {...}, "form": {...},
     "change": {"metric", "parent": {...}, "value": {...}, "metric_delta", "size_ratio",
                "latency_ratio", "speedup", "throughput_ratio"}}

Parent and child are evaluated and timed here, one after the other on the same machine, through
`Predictor` (the path that serves them), so their difference is not confounded by when or where
the parent was trained. cost.json counts the lineage: `wall_s`, `device_hours` and `usd` are the
parent's plus this step's (the model needed both); "step" holds this step alone.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from paretune.compression.base import Compressed
from paretune.compression.parent import Parent
from paretune.config.schema import Config
from paretune.run_folder import RunFolder
from paretune.run_replace import STAGING_SUFFIX, staged_target, swap_in
from paretune.stored import save_model as save_stored

log = logging.getLogger("paretune")


@dataclass
class BenchSettings:
    """How compress/distill time parent and child (paretune.cost.inference.bench_inference)."""

    enabled: bool = True
    max_seconds: float = 20.0  # per run, over all rounds: half for batch-1 latency, half for throughput
    repeats: int = 200
    batches: int = 20
    batch_size: int = 64
    # Child and parent are timed alternately this many times and each keeps its fastest round
    # (by p50): on a shared machine a burst of other work otherwise lands on one side only.
    rounds: int = 2


GENERATIVE_BENCH_BATCH = 8  # prompts per throughput batch when a prediction is a generated answer

def child_config(parent: Parent, output: Path | None, suffix: str, overwrite: bool = False) -> Config:
    """The parent's config, pointing at the parent's model and at the new folder."""
    # Built whole, not changed after the fact: a validated config is only ever read.
    # The child trains (recovery, distillation) from the parent's model/: with the trust its loader
    # gave, not what the parent's config.yaml claims. Its own config then records that choice.
    source = parent.config
    model = source.model.model_copy(update={"name_or_path": str(parent.run.model_dir.resolve()),
                                            "trust_remote_code": parent.trust_remote_code})
    folder = str(output or parent.path.parent / f"{parent.path.name}-{suffix}")
    return source.model_copy(deep=True, update={
        "model": model, "output": source.output.model_copy(update={"dir": folder, "overwrite": overwrite})})


def create_run(config: Config, parent: Parent) -> RunFolder:
    run = RunFolder.create(config)
    if (parent.path / "data.json").is_file():  # same data as the parent's training
        shutil.copyfile(parent.path / "data.json", run.path / "data.json")
    return run


def save_model(run: RunFolder, compressed: Compressed, parent: Parent) -> None:
    """model/ in the result's stored form, with the tokenizer and paretune.json."""
    save_stored(compressed.model, parent.tokenizer, run.model_dir, parent.info, compressed.form,
                compressed.form_settings)


def evaluate_run(run_dir: Path, parent: Parent,
                 samples_to: RunFolder | None = None) -> tuple[dict[str, Any], list | None, list[str] | None]:
    """Validation (and test) metrics of a run's saved model, loaded as it will serve, and what it
    answered on validation, for comparing child with parent: label ids (classification, NER), or
    for a generative run the generated answers, scored as its training scored them (exact match...).
    A generative run's first answers go to `samples_to`'s samples.jsonl, as a trained run's do."""
    from paretune.compression.agreement import predicted_labels
    from paretune.engine.evaluate import predict_outputs
    from paretune.predictor import Predictor

    predictor = Predictor.load(run_dir, trust_remote_code=parent.trust_remote_code)
    data = parent.data
    outputs, loss = predict_outputs(predictor.model, predictor.task, data.validation.encoded, 128,
                                    predictor.pad_id, predictor.device)
    results = {"validation": {"loss": loss, **predictor.task.metrics(outputs, data.validation.targets)}}
    answers = None
    if predictor.task.generates and data.validation_examples:
        from paretune.compression.agreement import answer_metrics

        scores, answers = answer_metrics(predictor, data.validation_examples, run_dir.name.removesuffix(STAGING_SUFFIX))
        results["validation"].update(scores)
        if samples_to is not None:
            write_samples(samples_to, predictor.task, data.validation_examples, answers)
    if data.test is not None:
        results["test"] = predictor.evaluate_set(data.test)
    return results, predicted_labels(predictor.task.name, outputs), answers


def write_samples(run: RunFolder, task, examples: list, answers: list[str]) -> None:
    """samples.jsonl as runner._final_evaluation writes it (row, prompt, reference, answer, match of
    the first answers; the run page shows them), from the answers `answer_metrics` scored: those
    are to the first rows with a reference, in order, so the same rows are picked again here."""
    make_samples = getattr(task, "answer_samples", None)
    if make_samples is None or not answers:
        return
    scored = [ex for ex in examples if ex.label is not None][: len(answers)]
    run.write_jsonl("samples.jsonl", make_samples(scored, answers, [str(ex.label) for ex in scored]))


def bench_pair(child: Path, parent: Path, settings: BenchSettings,
               trust_remote_code: bool = False) -> tuple[dict | None, dict | None]:
    """inference.json of child and parent, timed alternately, each its fastest round (see BenchSettings)."""
    if not settings.enabled:
        return None, None
    from paretune.cost.inference import INFERENCE_FILE, bench_inference

    best: dict[Path, dict] = {}
    rounds = max(settings.rounds, 1)
    # A generative prediction is a whole answer: a batch of 64 of them alone would take minutes.
    batch_size = min(settings.batch_size, GENERATIVE_BENCH_BATCH) if _generates(parent) else settings.batch_size
    seconds = settings.max_seconds / rounds
    for round_ in range(1, rounds + 1):
        for run_dir in (child, parent):
            log.info("timing %s (round %d of %d, about %.0f s; --bench-seconds sets this, --no-bench skips it)",
                     run_dir.name.removesuffix(STAGING_SUFFIX), round_, rounds, seconds)
            result = bench_inference(run_dir, batch_size=batch_size, repeats=settings.repeats,
                                     batches=settings.batches, max_seconds=seconds,
                                     progress=True, trust_remote_code=trust_remote_code)
            if run_dir not in best or result["latency_ms"]["p50"] < best[run_dir]["latency_ms"]["p50"]:
                best[run_dir] = result
    for run_dir, result in best.items():
        RunFolder(run_dir).write_json(INFERENCE_FILE, result)
    if not (parent / "metrics.json").is_file() or "compression" not in RunFolder(parent).read_json("metrics.json"):
        from paretune.model_card import refresh_model_card

        refresh_model_card(RunFolder(parent))  # its card shows the kept figures
    else:
        from paretune.compression.card import write_compression_card

        write_compression_card(RunFolder(parent))
    return best[child], best[parent]


def _generates(run_dir: Path) -> bool:
    from paretune.tasks import task_class

    return task_class(RunFolder(run_dir).read_config().task.type).generates


def change(metric: str, parent: dict, child: dict) -> dict[str, Any]:
    """Child against parent; each side: {metric value, size_mib, latency_p50_ms, throughput_per_s}."""
    def ratio(key: str) -> float | None:
        a, b = parent.get(key), child.get(key)
        return round(b / a, 4) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else None

    latency = ratio("latency_p50_ms")
    generated = {"tokens_per_s_ratio": ratio("tokens_per_s")} if "tokens_per_s" in child else {}
    return {
        "metric": metric,
        "parent": parent,
        "value": child,
        "metric_delta": round(child[metric] - parent[metric], 6)
        if isinstance(child.get(metric), (int, float)) and isinstance(parent.get(metric), (int, float)) else None,
        "size_ratio": ratio("size_mib"),
        "latency_ratio": latency,
        "speedup": round(1 / latency, 3) if latency else None,
        "throughput_ratio": ratio("throughput_per_s"),
        **generated,
    }


def side(metric: str, validation: dict, model_dir: Path, inference: dict | None) -> dict[str, Any]:
    from paretune.cost.inference import model_size_mib

    # A generative run ranked by its answers also shows the perplexity it trained on.
    also = {"perplexity": validation["perplexity"]} if metric != "perplexity" and "perplexity" in validation else {}
    # A generative run is also timed in generated tokens (bench-infer's "generation" figures).
    generation = (inference or {}).get("generation")
    tokens = {"tokens_per_s": generation.get("tokens_per_s_batched"),
              "time_to_first_token_ms": generation.get("time_to_first_token_ms"),
              "usd_per_million_tokens": generation.get("usd_per_million_generated_tokens")} if generation else {}
    return {
        metric: validation.get(metric),
        **also,
        "size_mib": round(model_size_mib(model_dir), 3),
        "latency_p50_ms": (inference or {}).get("latency_ms", {}).get("p50"),
        "throughput_per_s": (inference or {}).get("throughput_per_s"),
        **tokens,
    }


def untrained_metrics(parent: Parent, total_params: int) -> dict[str, Any]:
    """The training keys metrics.json carries, for a model made without training."""
    return {"metric": parent.read_json("metrics.json").get("metric"), "best_step": None, "steps": 0,
            "epochs": 0.0, "stopped_early": False, "nan_steps": 0, "lr": 0.0, "labels": parent.info["labels"],
            "total_params": total_params, "trainable_params": 0, "trainable_percent": 0.0}


def own_cost(phases: dict[str, float], parent: Parent) -> dict[str, Any]:
    """cost.json fields for a step that did not train (times, device, price, peak memory)."""
    from paretune.cost.device import describe_device
    from paretune.cost.prices import resolve_price
    from paretune.resources import PeakMemory

    device = describe_device("cpu")
    price = resolve_price(parent.config.cost, device)
    wall = sum(phases.values())
    hours = wall / 3600
    return {
        **device.as_dict(), "precision": "fp32", "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "wall_s": round(wall, 3), "device_hours": round(hours, 6),
        "train_samples": 0, "train_tokens": 0, "train_samples_per_s": 0.0, "padding_fraction": 0.0,
        **PeakMemory().read(),
        "price": price.as_dict() if price else None,
        "usd": float(f"{hours * price.usd_per_hour:.4g}") if price else None,
    }


def add_phases(cost: dict[str, Any], phases: dict[str, float]) -> dict[str, Any]:
    """A trained step's cost.json with the untimed-by-the-runner phases (load, compress) added."""
    extra = sum(phases.values())
    cost = dict(cost)
    cost["phases_s"] = {**cost.get("phases_s", {}), **{k: round(v, 3) for k, v in phases.items()}}
    cost["wall_s"] = round(cost.get("wall_s", 0) + extra, 3)
    hours = extra * cost.get("device_count", 1) / 3600
    cost["device_hours"] = round(cost.get("device_hours", 0) + hours, 6)
    price = (cost.get("price") or {}).get("usd_per_hour")
    if isinstance(cost.get("usd"), (int, float)) and price:
        cost["usd"] = float(f"{cost['usd'] + hours * price:.4g}")
    return cost


def lineage_cost(step: dict[str, Any], parent: Parent) -> dict[str, Any]:
    """This step's cost.json with wall_s, device_hours and usd summed over parent and step."""
    before = parent.read_json("cost.json")
    total = dict(step)
    for key in ("wall_s", "device_hours", "usd"):
        mine, theirs = step.get(key), before.get(key)
        total[key] = None if mine is None or theirs is None else float(f"{mine + theirs:.6g}")
    total["step"] = {k: step.get(k) for k in ("wall_s", "device_hours", "usd")}
    total["parent"] = {"run": str(parent.path), **{k: before.get(k) for k in ("wall_s", "device_hours", "usd")}}
    return total


def finish(run: RunFolder, parent: Parent, entry: dict[str, Any], metrics: dict[str, Any],
           cost: dict[str, Any], settings: BenchSettings) -> dict[str, Any]:
    """Evaluate and time child and parent, then write metrics.json (last), cost.json and README."""
    from paretune.compression.agreement import answer_agreement, label_agreement, quality_warnings
    from paretune.compression.card import write_compression_card
    from paretune.frontier.points import ranking_metric

    started = time.perf_counter()
    # Also proves the saved model loads back; its answers are what the served model says, so they
    # replace any samples.jsonl that recovery training wrote (written before metrics.json).
    child, child_labels, child_answers = evaluate_run(run.path, parent, samples_to=run)
    before, parent_labels, parent_answers = evaluate_run(parent.path, parent)
    child_bench, parent_bench = bench_pair(run.path, parent.path, settings, parent.trust_remote_code)
    # A generative run is compared on its answers (exact match...), not on perplexity alone.
    metric = ranking_metric({"metric": metrics["metric"], "validation": before["validation"]})
    entry["change"] = change(metric, side(metric, before["validation"], parent.run.model_dir, parent_bench),
                             side(metric, child["validation"], run.model_dir, child_bench))
    entry["change"]["label_agreement"] = label_agreement(child_labels, parent_labels)
    if child_answers is not None:
        entry["change"]["answer_agreement"] = answer_agreement(child_answers, parent_answers)
    entry["change"]["warnings"] = quality_warnings(entry["change"])
    for warning in entry["change"]["warnings"]:
        log.warning("%s: %s", run.path.name.removesuffix(STAGING_SUFFIX), warning)
    entry["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry["measure_s"] = round(time.perf_counter() - started, 3)  # comparing, not part of the cost
    if "validation" not in metrics:  # trained runs keep the metrics their final evaluation wrote
        metrics = {**child, **metrics}
    run.write_json("cost.json", cost)
    metrics = {**metrics, "compression": entry}
    run.write_json("metrics.json", metrics)  # written last: its presence marks a finished run
    write_compression_card(run)
    config = run.read_config()
    target = staged_target(run.path, config)
    if target is not None:  # output.overwrite of a finished run: it is replaced only now
        swap_in(run.path, target, config)
        run.path = target
    return metrics

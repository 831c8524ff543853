"""`paretune ensemble`: one run folder whose model combines the predictions of finished runs.

Rules (docs/combining.md):
    average   the members' probabilities, equal weights
    weighted  weights on the simplex that minimise the log-loss on the validation rows
    vote      each member's top class counts once (averaged probabilities break ties)
    stacking  a logistic regression over every member's log-probabilities, fitted on the
              validation rows; the validation figure recorded is out-of-fold (5 folds), so no
              row is scored by a meta-model that saw it

The run folder is ordinary: config.yaml (the first member's, with `method: ensemble`),
metrics.json, cost.json (members' training plus the combining step), data.json, model/ in the
`ensemble` stored form (stored/ensemble.py), and inference.json estimated from the members' when
they all have one (bench-infer measures the ensemble itself).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paretune.combine.members import (Clock, Member, Split, fit_on, load_predictors, member_metric, member_outputs,
                                      open_members, read_splits, relative_to, summed_cost, summed_inference)
from paretune.config.loading import config_from_dict
from paretune.errors import ParetuneError
from paretune.run_folder import RunFolder
from paretune.stored import save_model
from paretune.stored import ensemble as form
from paretune.stored.ensemble import EPS, combine

log = logging.getLogger("paretune")
RULES = ("average", "weighted", "vote", "stacking")


def build_ensemble(run_dirs: list[str | Path], rule: str, output: str | Path, *, overwrite: bool = False,
                   trust_remote_code: bool = False, validation: str | Path | None = None) -> Path:
    """Write the ensemble's run folder at `output`; returns its path."""
    if rule not in RULES:
        raise ParetuneError(f"unknown ensemble method '{rule}' (known: {', '.join(RULES)})")
    clock = Clock()
    members = fit_on(open_members(run_dirs), validation)
    predictors = load_predictors(members, trust_remote_code)
    task = predictors[0].task
    _check_rule(rule, task, predictors)
    validation, test = read_splits(members[0])
    val_probs = [np.stack(member_outputs(p, validation)) for p in predictors] if not task.word_level else None
    weights, meta, oof = _fit(rule, task, val_probs, validation)
    settings: dict[str, Any] = {"rule": rule, "soft_targets": task.soft_targets, "weights": weights}
    metrics = {"validation": _score(task, rule, val_probs, settings, meta, validation, predictors, oof)}
    if test is not None:
        test_probs = [np.stack(member_outputs(p, test)) for p in predictors] if not task.word_level else None
        metrics["test"] = _score(task, rule, test_probs, settings, meta, test, predictors, None)
    return _write_run(members, predictors, rule, settings, meta, metrics, Path(output), overwrite, clock)


def _check_rule(rule: str, task, predictors) -> None:
    if rule in ("vote", "stacking") and task.soft_targets != "softmax":
        raise ParetuneError(f"--method {rule} needs class probabilities; a {task.name} task combines by "
                            "average or weighted")
    if task.word_level:
        tok = predictors[0].tokenizer
        if rule in ("weighted", "stacking"):
            raise ParetuneError(f"--method {rule} is for sequence-level tasks; a {task.name} ensemble "
                                "combines by average or vote")
        if any(p.tokenizer.get_vocab() != tok.get_vocab() for p in predictors[1:]):
            raise ParetuneError(f"a {task.name} ensemble combines per token: every member must share one "
                                "tokenizer (these runs tokenize differently)")


def _fit(rule: str, task, probs: list[np.ndarray] | None, validation: Split):
    """(weights, stacking meta-model or None, out-of-fold validation probabilities or None)."""
    if rule == "weighted":
        return fit_weights(probs, np.asarray(validation.targets), task.soft_targets), None, None
    if rule == "stacking":
        meta, oof = fit_stacking(probs, np.asarray(validation.targets), len(task.label_names))
        return None, meta, oof
    return None, None, None


def fit_weights(probs: list[np.ndarray], targets: np.ndarray, soft: str) -> list[float]:
    """Simplex weights minimising the validation loss of the weighted average (softmax-parametrised)."""
    from scipy.optimize import minimize

    stacked = np.stack(probs)  # [members, rows, classes]

    def loss(z: np.ndarray) -> float:
        w = np.exp(z - z.max())
        mixed = np.tensordot(w / w.sum(), stacked, axes=1)
        if soft == "softmax":
            return float(-np.log(np.clip(mixed[np.arange(len(targets)), targets], EPS, 1)).mean())
        if soft == "sigmoid":
            mixed = np.clip(mixed, EPS, 1 - EPS)
            return float(-(targets * np.log(mixed) + (1 - targets) * np.log(1 - mixed)).mean())
        return float(((mixed.reshape(targets.shape) - targets) ** 2).mean())

    found = minimize(loss, np.zeros(len(probs)), method="Nelder-Mead", options={"maxiter": 400, "xatol": 1e-4})
    w = np.exp(found.x - found.x.max())
    return [round(float(v), 6) for v in w / w.sum()]


def fit_stacking(probs: list[np.ndarray], targets: np.ndarray, n_classes: int, folds: int = 5):
    """The meta-model ({"weight": [C, F], "bias": [C]}) fitted on every validation row, and the
    out-of-fold probabilities (each row predicted by a meta-model fitted without it)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features = np.concatenate([np.log(np.clip(p, EPS, 1)) for p in probs], axis=1)
    smallest = int(np.bincount(targets, minlength=n_classes).min())
    if smallest < 2 or len(set(targets.tolist())) < n_classes:
        raise ParetuneError("stacking needs at least 2 validation rows of every class to fit out-of-fold")
    model = LogisticRegression(max_iter=2000)
    cv = StratifiedKFold(min(folds, smallest), shuffle=True, random_state=0)
    oof = cross_val_predict(model, features, targets, cv=cv, method="predict_proba")
    model.fit(features, targets)
    weight, bias = model.coef_, model.intercept_
    if n_classes == 2:  # sklearn keeps one row for two classes: logits [0, z] give the same softmax
        weight, bias = np.vstack([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
    return {"weight": weight, "bias": bias}, list(oof)


def _score(task, rule, probs, settings, meta, split: Split, predictors, oof) -> dict[str, Any]:
    if oof is not None:
        return task.metrics(oof, split.targets)
    if probs is None:  # token-level: run the ensemble model itself over the split
        return _score_by_model(task, rule, settings, split, predictors)
    weights = torch.tensor(settings["weights"] or [1 / len(probs)] * len(probs), dtype=torch.float32)
    meta_t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in (meta or {}).items()}
    logits = combine([torch.as_tensor(p, dtype=torch.float32) for p in probs], rule, task.soft_targets, weights,
                     meta_t.get("weight"), meta_t.get("bias"))
    return task.metrics(task.outputs(logits, {}), split.targets)


def _score_by_model(task, rule, settings, split: Split, predictors) -> dict[str, Any]:
    from paretune.predictor import Predictor

    first = predictors[0]
    recorded = {**settings, "members": []}
    model = form.EnsembleModel([p.model for p in predictors], [p.tokenizer for p in predictors],
                               [p.max_length for p in predictors], first.tokenizer, recorded)
    joint = Predictor(model, first.tokenizer, task, first.max_length, first.device, first.run_dir)
    return task.metrics(member_outputs(joint, split, cache=False), split.targets)


def _write_run(members: list[Member], predictors, rule: str, settings: dict, meta, metrics: dict,
               output: Path, overwrite: bool, clock: Clock) -> Path:
    first = members[0]
    raw = first.config.model_dump(mode="json")
    raw["method"] = {"name": "ensemble", "rule": rule, "members": [str(m.path) for m in members],
                     "weights": settings["weights"]}
    raw["output"] = {**raw.get("output", {}), "dir": str(output), "overwrite": overwrite}
    run = RunFolder.create(config_from_dict(raw, f"ensemble of {', '.join(m.name for m in members)}"))
    model_dir = run.model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    settings = {**settings, "members": [relative_to(m.path / "model", model_dir) for m in members]}
    if meta is not None:
        settings["meta"] = meta
    info = {**first.info, "method": "ensemble"}
    info.pop("form", None)
    save_model(None, predictors[0].tokenizer, model_dir, info, form.NAME, settings)
    if (first.path / "data.json").is_file():
        shutil.copy(first.path / "data.json", run.path / "data.json")
    estimate = summed_inference(members)
    if estimate is not None:
        run.write_json("inference.json", estimate)
    metric = member_metric(members)
    run.write_json("cost.json", summed_cost(members, clock.seconds()))
    run.write_json("metrics.json", {**metrics, "metric": metric, "labels": first.info.get("labels"),
                                    "rule": rule, "members": [str(m.path) for m in members],
                                    "member_validation": {m.name: m.quality(metric) for m in members},
                                    "weights": settings["weights"]})
    _write_card(run, members, rule, metrics, metric)
    log.info("ensemble (%s) of %d runs -> %s: validation %s %.4f", rule, len(members), run.path, metric,
             metrics["validation"].get(metric, float("nan")))
    return run.path


def _write_card(run: RunFolder, members: list[Member], rule: str, metrics: dict, metric: str) -> None:
    lines = [f"# {run.path.name}: ensemble ({rule}) of {len(members)} runs", "",
             "| run | validation " + metric + " |", "| --- | --- |"]
    lines += [f"| {m.path} | {m.quality(metric)} |" for m in members]
    lines += ["", f"Ensemble validation {metric}: {metrics['validation'].get(metric)}"
              + (" (out-of-fold)" if rule == "stacking" else ""), "",
              "Load it with `paretune eval`, `predict`, `serve` or `Predictor.load` like any run: every member is",
              "loaded from where it was when the ensemble was made (model/paretune.json lists them).", ""]
    (run.path / "README.md").write_text("\n".join(lines))

"""`paretune soup`: average the weights of runs fine-tuned from one base into one model.

    uniform   the mean of every run's weights
    greedy    runs sorted by their validation score; starting from the best, a run joins the
              soup only if the soup's validation score improves (Wortsman et al., 2022)

Every run must be stored as plain transformers weights (full, freeze, merged LoRA/AdaLoRA/IA3)
of the same base model and architecture; anything else is refused. Averaging merged LoRA runs is
peft's `linear` merge of their adapters; `--merge ties|dare_linear` uses peft's
`add_weighted_adapter` on the runs' adapter/ folders instead (LoRA runs only), with the trained
heads averaged. The result is one model: one model's serving cost.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from paretune.combine.members import (Clock, Member, Split, fit_on, load_predictors, member_metric, member_outputs,
                                      open_members, read_splits, summed_cost)
from paretune.config.loading import config_from_dict
from paretune.errors import ParetuneError
from paretune.models import model_source
from paretune.predictor import Predictor
from paretune.run_folder import RunFolder
from paretune.stored import form_of, save_model, weights_form

log = logging.getLogger("paretune")
RECIPES = ("uniform", "greedy")
MERGES = ("average", "ties", "dare_linear")


def build_soup(run_dirs: list[str | Path], recipe: str, output: str | Path, *, merge: str = "average",
               overwrite: bool = False, trust_remote_code: bool = False,
               validation: str | Path | None = None) -> Path:
    if recipe not in RECIPES or merge not in MERGES:
        raise ParetuneError(f"soup recipe must be one of {RECIPES} and merge one of {MERGES}")
    clock = Clock()
    members = fit_on(open_members(run_dirs), validation)
    check_same_base(members, merge)
    predictors = load_predictors(members, trust_remote_code)
    base = predictors[0]
    states = [{k: v.detach().clone() for k, v in p.model.state_dict().items()} for p in predictors]
    validation, test = read_splits(members[0])
    metric = member_metric(members)
    if merge != "average":
        kept = list(range(len(members)))
        base.model.load_state_dict(peft_merge(members, base, states, merge))
    elif recipe == "uniform":
        kept = list(range(len(members)))
        base.model.load_state_dict(average([states[i] for i in kept]))
    else:
        kept = greedy(base, states, members, validation, metric)
    scores = {"validation": _score(base, validation)}
    if test is not None:
        scores["test"] = _score(base, test)
    return _write_run(members, base, recipe, merge, kept, scores, metric, Path(output), overwrite, clock)


def check_same_base(members: list[Member], merge: str) -> None:
    """Same base model, same architecture, same weight names and shapes; plain weights only."""
    first = members[0]
    for member in members:
        form = form_of(member.path / "model")
        if not form.compressible:
            raise ParetuneError(f"{member.path} is stored as {form.name}: a soup averages plain fp32 "
                                "transformers weights (full, freeze or merged LoRA runs)")
        if merge != "average" and not (member.path / "adapter" / "adapter_config.json").is_file():
            raise ParetuneError(f"--merge {merge} merges LoRA adapters: {member.path} has no adapter/ folder")
    for other in members[1:]:
        if model_source(other.config.model) != model_source(first.config.model):
            raise ParetuneError(f"{first.path} was fine-tuned from {model_source(first.config.model)} and "
                                f"{other.path} from {model_source(other.config.model)}: a soup needs one base")
        a, b = _architecture(first), _architecture(other)
        if a != b:
            raise ParetuneError(f"{first.path} and {other.path} have different architectures ({a} vs {b})")


def _architecture(member: Member) -> tuple:
    config = json.loads((member.path / "model" / "config.json").read_text())
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    return tuple(config.get("architectures") or ()) + tuple(config.get(k) for k in keys)


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point weights; integer buffers (position ids) of the first."""
    mean = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            mean[key] = sum(s[key].float() for s in states).div(len(states)).to(value.dtype)
        else:
            mean[key] = value
    return mean


def _score(predictor: Predictor, split: Split) -> dict[str, Any]:
    return predictor.task.metrics(member_outputs(predictor, split, cache=False), split.targets)


def greedy(base: Predictor, states, members: list[Member], validation: Split, metric: str) -> list[int]:
    """Indices kept: best run first, each next one only if the soup's validation score strictly
    improves (a tie adds nothing). Runs are ranked by their score on the soup's own validation rows,
    not by the figure each recorded: members validated on different rows would be ranked unfairly.
    Equal scores keep the order the runs were given in."""
    sign = 1.0 if base.task.greater_is_better(metric) else -1.0
    alone = []
    for state in states:
        base.model.load_state_dict(state)
        alone.append(_score(base, validation)[metric])
    order = sorted(range(len(members)), key=lambda i: sign * alone[i], reverse=True)
    kept, best = [order[0]], alone[order[0]]
    log.info("greedy soup: starts from %s (validation %s %.4f)", members[order[0]].name, metric, best)
    for i in order[1:]:
        base.model.load_state_dict(average([states[j] for j in kept + [i]]))
        score = _score(base, validation)[metric]
        log.info("greedy soup: + %s -> validation %s %.4f (best so far %.4f)", members[i].name, metric, score, best)
        if sign * score > sign * best:
            kept, best = kept + [i], score
    base.model.load_state_dict(average([states[j] for j in kept]))
    return kept


def peft_merge(members: list[Member], base: Predictor, states, merge: str) -> dict[str, torch.Tensor]:
    """LoRA adapters merged by peft's add_weighted_adapter (ties, dare_linear) onto the base, with
    the members' trained heads averaged; returns the merged model's weights."""
    import peft

    from paretune.models import load_model

    def lora_only(member: Member):
        # peft refuses to merge adapters that each carry a trained head (modules_to_save); the heads
        # are averaged from the members' own weights below, so only the LoRA matrices are loaded.
        config = peft.PeftConfig.from_pretrained(member.path / "adapter")
        config.modules_to_save = None
        config.task_type = None  # a classification task_type would wrap the head again
        return config

    fresh = load_model(members[0].config.model, base.task)
    names = [f"m{i}" for i in range(len(members))]
    model = peft.PeftModel.from_pretrained(fresh, members[0].path / "adapter", adapter_name=names[0],
                                           config=lora_only(members[0]))
    for name, member in zip(names[1:], members[1:]):
        model.add_adapter(name, lora_only(member))  # load_adapter then keeps this config
        model.load_adapter(member.path / "adapter", adapter_name=name)
    model.add_weighted_adapter(names, [1.0] * len(names), "soup", combination_type=merge, density=0.5)
    model.set_adapter("soup")
    merged = model.merge_and_unload().state_dict()
    heads = average(states)
    return {k: (heads[k] if k in heads and _is_head(k, base) else v) for k, v in merged.items()}


def _is_head(key: str, base: Predictor) -> bool:
    prefix = getattr(base.model, "base_model_prefix", "")
    return not key.startswith(prefix + ".") or ".pooler." in key


def _write_run(members: list[Member], base: Predictor, recipe: str, merge: str, kept: list[int], scores: dict,
               metric: str, output: Path, overwrite: bool, clock: Clock) -> Path:
    first = members[0]
    raw = first.config.model_dump(mode="json")
    raw["method"] = {"name": "soup", "recipe": recipe, "merge": merge, "members": [str(m.path) for m in members],
                     "kept": [str(members[i].path) for i in kept]}
    raw["output"] = {**raw.get("output", {}), "dir": str(output), "overwrite": overwrite}
    run = RunFolder.create(config_from_dict(raw, f"soup of {', '.join(m.name for m in members)}"))
    info = {**first.info, "method": "soup"}
    info.pop("form", None)
    save_model(base.model, base.tokenizer, run.model_dir, info, weights_form(base.model))
    data = first.path / "data.json"
    if data.is_file():
        run.write_json("data.json", json.loads(data.read_text()))
    run.write_json("cost.json", summed_cost(members, clock.seconds()))
    run.write_json("metrics.json", {**scores, "metric": metric, "labels": first.info.get("labels"),
                                    "recipe": recipe, "merge": merge,
                                    "kept": [members[i].name for i in kept],
                                    "member_validation": {m.name: m.quality(metric) for m in members}})
    (run.path / "README.md").write_text(
        f"# {run.path.name}: {recipe} soup ({merge}) of {len(members)} runs\n\nKept: "
        f"{', '.join(members[i].name for i in kept)}. Validation {metric}: {scores['validation'].get(metric)}\n\n"
        "model/ holds plain transformers weights: one model's serving cost.\n")
    log.info("%s soup kept %d of %d runs -> %s: validation %s %.4f", recipe, len(kept), len(members), run.path,
             metric, scores["validation"].get(metric, float("nan")))
    return run.path

"""Ensembles, soups, few-shot and zero-shot on the tiny model: each makes a run folder the rest of
paretune reads like any other, and mixtures that cannot combine are refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import paretune
from conftest import sentiment_rows, write_csv
from paretune import Predictor
from paretune.combine.ensemble import build_ensemble
from paretune.errors import ConfigError, ParetuneError
from paretune.run_folder import TASK_FILE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(model_dir: Path, folder: Path, run_name: str, **method) -> dict:
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {"train": str(folder / "train.csv"), "validation": str(folder / "validation.csv"),
                 "test": str(folder / "test.csv"), "max_length": 24, "cache_dir": str(folder / "cache")},
        "method": method or {"name": "full"},
        "training": {"epochs": 6, "batch_size": 16, "lr": 1e-3, "seed": 7, "warmup_ratio": 0.0,
                     "save_every": 10_000},
        "output": {"dir": str(folder / run_name)},
    }


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Three short full fine-tunes of one base (same head init, different learning rates) and a LoRA run."""
    folder = tmp_path_factory.mktemp("combining")
    write_csv(folder / "train.csv", sentiment_rows(96, seed=1))
    write_csv(folder / "validation.csv", sentiment_rows(40, seed=2))
    write_csv(folder / "test.csv", sentiment_rows(24, seed=3))
    made = {}
    for name, lr in (("a", 1e-3), ("b", 5e-4), ("c", 2e-3)):
        cfg = config(tiny_model_dir, folder, name)
        cfg["training"]["lr"] = lr
        made[name] = paretune.finetune(cfg).path
    made["lora"] = paretune.finetune(config(tiny_model_dir, folder, "lora", name="lora", r=4)).path
    second = config(tiny_model_dir, folder, "lora2", name="lora", r=4)
    second["training"]["lr"] = 2e-3
    made["lora2"] = paretune.finetune(second).path
    made["folder"] = folder
    return made


def recorded(run_dir: Path, split: str = "validation") -> float:
    return json.loads((run_dir / "metrics.json").read_text())[split]["accuracy"]


@pytest.mark.parametrize("rule", ["average", "weighted", "vote", "stacking"])
def test_an_ensemble_is_a_run_folder_that_eval_reads(runs, rule, tmp_path):
    members = [runs["a"], runs["b"], runs["lora"]]
    out = build_ensemble(members, rule, tmp_path / "ens")
    predictor = Predictor.load(out, device="cpu")
    assert len(predictor.predict(["the film was great", "a dull plot"])) == 2
    test = predictor.evaluate(runs["folder"] / "test.csv")
    assert test["accuracy"] == pytest.approx(recorded(out, "test"))  # what it recorded is what it serves
    if rule != "stacking":  # stacking records its out-of-fold validation figure, not a refit one
        assert predictor.evaluate(runs["folder"] / "validation.csv")["accuracy"] == pytest.approx(recorded(out))
    metrics = json.loads((out / "metrics.json").read_text())
    weights = metrics["weights"]
    assert (weights is None) == (rule != "weighted") and (weights is None or sum(weights) == pytest.approx(1))
    cost = json.loads((out / "cost.json").read_text())
    member_usd = [json.loads((m / "cost.json").read_text())["usd"] for m in members]
    assert cost["usd"] >= sum(member_usd) > 0  # its training cost is its members' plus its own step
    config_yaml = (out / "config.yaml").read_text()
    assert "name: ensemble" in config_yaml and f"rule: {rule}" in config_yaml


def test_the_ensemble_command_and_eval_json(runs, tmp_path):
    from paretune.cli import _register, app

    _register()
    cli = CliRunner()
    out = tmp_path / "ens"
    made = cli.invoke(app, ["ensemble", str(runs["a"]), str(runs["c"]), "--method", "weighted", "--output", str(out)])
    assert made.exit_code == 0, made.output
    scored = cli.invoke(app, ["eval", str(out), "--data", str(runs["folder"] / "test.csv"), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout.strip().splitlines()[-1])["accuracy"] == pytest.approx(recorded(out, "test"))
    from paretune.cost.inference import bench_inference, model_size_mib

    measured = bench_inference(out, repeats=3, batch_size=4, max_seconds=2, progress=False)
    assert measured["size_mib"] >= model_size_mib(runs["a"] / "model") + model_size_mib(runs["c"] / "model")


def test_combining_can_fit_on_another_validation_file(runs, tmp_path):
    from paretune.combine.soup import build_soup

    other = runs["folder"] / "test.csv"  # any file with the runs' columns
    members = [runs["a"], runs["b"], runs["c"]]
    ens = build_ensemble(members, "weighted", tmp_path / "ens", validation=other)
    soup = build_soup(members, "greedy", tmp_path / "soup", validation=other)
    for out in (ens, soup):
        assert recorded(out) == pytest.approx(recorded(out, "test"))  # it was fitted and scored on that file
        assert Predictor.load(out, device="cpu").evaluate(other)["accuracy"] == pytest.approx(recorded(out))
        assert str(other.resolve()) in (out / "config.yaml").read_text()  # and says so
    with pytest.raises(ParetuneError, match="no such file"):
        build_ensemble(members, "weighted", tmp_path / "none", validation=tmp_path / "missing.csv")


def test_runs_with_different_labels_are_refused(runs, tmp_path):
    other = shutil.copytree(runs["b"], tmp_path / "relabelled")
    info = json.loads((other / "model" / TASK_FILE).read_text())
    (other / "model" / TASK_FILE).write_text(json.dumps({**info, "labels": ["bad", "good"]}))
    with pytest.raises(ParetuneError, match="same labels"):
        build_ensemble([runs["a"], other], "average", tmp_path / "ens")
    with pytest.raises(ParetuneError, match="at least 2"):
        build_ensemble([runs["a"]], "average", tmp_path / "ens")


def test_a_member_replaced_by_a_run_of_other_labels_or_task_stops_the_ensemble_loading(runs, tmp_path):
    member = shutil.copytree(runs["b"], tmp_path / "b")
    out = build_ensemble([runs["a"], member], "average", tmp_path / "ens")
    info_file = member / "model" / TASK_FILE
    info = json.loads(info_file.read_text())
    for replaced, what in (({**info, "labels": ["bad", "good"]}, "labels"),
                           ({**info, "task": {**info["task"], "type": "regression"}}, "task"),
                           ({**info, "task": {**info["task"], "type": "image-classification"}}, "task")):
        info_file.write_text(json.dumps(replaced))
        with pytest.raises(ParetuneError, match=f"ensemble member .*b/model now has {what}"):
            Predictor.load(out, device="cpu")
    info_file.write_text(json.dumps(info))
    assert len(Predictor.load(out, device="cpu").predict(["a fine film"])) == 1


def test_training_an_ensemble_method_says_which_command_makes_it(tiny_model_dir, runs):
    cfg = config(tiny_model_dir, runs["folder"], "nope", name="ensemble")
    with pytest.raises(ConfigError, match="paretune ensemble"):
        paretune.finetune(cfg)


def test_few_shot_and_zero_shot_write_run_folders_that_predict(tiny_model_dir, runs, tmp_path):
    folder = runs["folder"]
    few = paretune.finetune({**config(tiny_model_dir, folder, "few"), "output": {"dir": str(tmp_path / "few")},
                             "method": {"name": "few-shot", "examples_per_class": 4, "iterations": 2}})
    zero = paretune.finetune({**config(tiny_model_dir, folder, "zero"), "output": {"dir": str(tmp_path / "zero")},
                              "method": {"name": "zero-shot", "descriptions": {"positive": "good great"},
                                         "template": "it was {}"}})
    assert json.loads((few.path / "data.json").read_text())["train_rows"] == 8
    assert json.loads((zero.path / "cost.json").read_text())["usd"] == 0
    for run in (few, zero):
        predictor = Predictor.load(run.path, device="cpu")
        assert {p["label"] for p in predictor.predict(["the film was great"])} <= {"positive", "negative"}
        scored = predictor.evaluate(folder / "validation.csv")
        assert scored["accuracy"] == pytest.approx(run.metrics["validation"]["accuracy"])


@pytest.mark.parametrize("recipe", ["uniform", "greedy"])
def test_a_soup_is_one_plain_model(runs, recipe, tmp_path):
    from paretune.combine.soup import build_soup

    members = [runs["a"], runs["b"], runs["c"]]
    out = build_soup(members, recipe, tmp_path / "soup")
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "model" / TASK_FILE).read_text())["form"]["name"] == "pytorch"
    predictor = Predictor.load(out, device="cpu")
    assert predictor.evaluate(runs["folder"] / "validation.csv")["accuracy"] == pytest.approx(recorded(out))
    if recipe == "greedy":  # it starts from the best run and only takes what helps on validation
        assert recorded(out) >= max(recorded(m) for m in members) - 1e-9 or len(metrics["kept"]) == 1
    else:
        assert len(metrics["kept"]) == 3


@pytest.mark.parametrize("merge", ["average", "ties", "dare_linear"])
def test_lora_runs_merge_into_one_plain_model(runs, merge, tiny_model_dir, tmp_path):
    """average: the mean of the merged weights (W + mean of B_i A_i, the exact linear merge); ties and
    dare_linear: peft's add_weighted_adapter over the runs' adapter/ folders, heads averaged."""
    from paretune.combine.soup import build_soup

    out = build_soup([runs["lora"], runs["lora2"]], "uniform", tmp_path / "soup", merge=merge)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["merge"] == merge and len(metrics["kept"]) == 2
    assert json.loads((out / "model" / TASK_FILE).read_text())["form"]["name"] == "pytorch"
    predictor = Predictor.load(out, device="cpu")
    assert predictor.evaluate(runs["folder"] / "validation.csv")["accuracy"] == pytest.approx(recorded(out))
    # the merged model is neither member nor the bare base: the adapters' deltas were combined
    from transformers import BertModel

    mine = predictor.model.state_dict()
    bare = {f"bert.{k}": v for k, v in BertModel.from_pretrained(tiny_model_dir).state_dict().items()}
    for theirs in [bare] + [Predictor.load(m, device="cpu").model.state_dict() for m in (runs["lora"], runs["lora2"])]:
        assert any(not torch.allclose(mine[k], theirs[k]) for k in mine if "query.weight" in k)


def test_merging_adapters_needs_lora_runs(runs, tmp_path):
    from paretune.combine.soup import build_soup

    with pytest.raises(ParetuneError, match="no adapter/ folder"):
        build_soup([runs["lora"], runs["a"]], "uniform", tmp_path / "soup", merge="ties")


def test_a_soup_refuses_runs_of_different_bases_or_forms(runs, tmp_path):
    import yaml

    from paretune.combine.soup import build_soup

    other = shutil.copytree(runs["b"], tmp_path / "other")
    raw = yaml.safe_load((other / "config.yaml").read_text())
    raw["model"]["name_or_path"] = str(tmp_path / "another-base")
    (other / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParetuneError, match="one base"):
        build_soup([runs["a"], other], "uniform", tmp_path / "soup")
    half = shutil.copytree(runs["c"], tmp_path / "half")  # a model/ in a form that is not fp32 weights
    info = json.loads((half / "model" / TASK_FILE).read_text())
    (half / "model" / TASK_FILE).write_text(json.dumps({**info, "form": {"name": "fp16"}}))
    with pytest.raises(ParetuneError, match="plain fp32"):
        build_soup([runs["a"], half], "uniform", tmp_path / "soup2")


def test_a_sweep_ends_with_an_ensemble_and_a_soup_on_its_frontier(tiny_config, tmp_path):
    import yaml

    from paretune.frontier.points import collect
    from paretune.sweep import load_sweep, run_sweep

    base = {k: v for k, v in tiny_config.items() if k != "output"}
    base["training"] = {**base["training"], "max_steps": 4}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "dir": str(tmp_path / "out"), "grid": {"training.lr": [1e-3, 5e-4, 2e-3]},
        "ensemble": {"top_k": 3, "method": "weighted"}, "soup": {"top_k": 2, "recipe": "greedy"}}))
    run_sweep(load_sweep(tmp_path / "sweep.yaml"))
    points, _ = collect([tmp_path / "out"])
    methods = {p.name: p.method for p in points if p.finished}
    assert methods["ensemble-weighted"] == "ensemble" and methods["soup-greedy"] == "soup"
    assert sum(m == "full" for m in methods.values()) == 3


def test_an_ner_ensemble_combines_per_token(tiny_model_dir, tmp_path):
    from conftest import ner_sentences, write_conll

    def ner_run(name: str, seed: int) -> Path:
        return paretune.finetune({
            "model": {"name_or_path": str(tiny_model_dir)}, "task": {"type": "ner"},
            "data": {"train": str(write_conll(tmp_path / "train.conll", ner_sentences(80, seed=1))),
                     "validation": str(write_conll(tmp_path / "validation.conll", ner_sentences(20, seed=2))),
                     "max_length": 32, "cache_dir": str(tmp_path / "cache")},
            "training": {"max_steps": 10, "batch_size": 16, "lr": 3e-3, "scheduler": "constant", "seed": seed,
                         "warmup_ratio": 0.0, "save_every": 10_000},
            "output": {"dir": str(tmp_path / name)}}).path

    members = [ner_run("a", 1), ner_run("b", 2)]
    out = build_ensemble(members, "average", tmp_path / "ens")
    scored = Predictor.load(out, device="cpu").evaluate(tmp_path / "validation.conll")
    assert scored["f1"] == pytest.approx(json.loads((out / "metrics.json").read_text())["validation"]["f1"])
    with pytest.raises(ParetuneError, match="sequence-level"):
        build_ensemble(members, "weighted", tmp_path / "ens2")

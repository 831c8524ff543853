"""Data-parallel training: 2 CPU processes (gloo) train exactly what 1 process trains.

The tiny model has dropout switched off: dropout masks are drawn per process, so with dropout
on, 1 and 2 processes train equally well but not identically. Everything else is the same
computation: the same global batches (token budget, uneven row shares), gradient accumulation,
clipping, AdamW, evaluation sharded and gathered. The tolerances are float reordering noise:
with the per-process losses left unweighted (each process's mean, as plain DDP averages them) this
same run ended with weights 0.06 and validation loss 4e-3 away from the one-process run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from conftest import sentiment_rows, write_csv

pytestmark = pytest.mark.slow

WEIGHT_TOL = 5e-6  # observed: 4e-7 to 6e-7 (1 vs 2 processes), 0 (resumed vs straight, 2 processes)
METRIC_TOL = 1e-5
# Attention key biases get an exactly zero gradient (softmax ignores a shift shared by all keys),
# so AdamW turns float noise into lr-sized steps: their values differ between any two runs whose
# sums are ordered differently, and change no output.
NOISE_ONLY = ".attention.self.key.bias"


def _paretune(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    exe = shutil.which("paretune")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "paretune", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    model = root / "tiny-no-dropout"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (model / "config.json").write_text(json.dumps(config))
    cfg = {
        "model": {"name_or_path": str(model)},
        "data": {
            "train": str(write_csv(root / "train.csv", sentiment_rows(160, seed=1))),
            "validation": str(write_csv(root / "validation.csv", sentiment_rows(40, seed=2))),
            "max_length": 32,
            "cache_dir": str(root / "cache"),
        },
        # Token-budget batches of ~8 rows: 2 processes get unequal row shares of many of them.
        # 80 steps take the random model from chance to 100% on the toy task.
        "training": {"epochs": 10, "batch_tokens": 96, "gradient_accumulation_steps": 2, "lr": 2e-3,
                     "seed": 7, "warmup_ratio": 0.0, "eval_every": 20, "save_every": 20,
                     "keep_checkpoints": 2, "eval_batch_size": 16},
        # The resume test below makes a killed run from a finished one's checkpoints.
        "output": {"keep_checkpoints_after_run": True},
    }
    path = root / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, path, cfg


@pytest.fixture(scope="module")
def one_and_two(setup):
    """The same config trained on 1 process (in this one) and on 2 (`paretune train --nproc 2`)."""
    import torch

    import paretune

    root, path, _ = setup
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = paretune.finetune(path, [f"output.dir={root / 'one'}"]).path
    finally:
        torch.set_num_threads(threads)
    done = _paretune(["train", str(path), "--nproc", "2", "--set", f"output.dir={root / 'two'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    return one, root / "two"


def _weights(run: Path) -> dict:
    return load_file(str(run / "model" / "model.safetensors"))


def _max_weight_diff(a: Path, b: Path, skip: str | None = None) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa if not (skip and k.endswith(skip)))


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_what_one_trains(one_and_two):
    one, two = one_and_two
    m1, m2 = (json.loads((r / "metrics.json").read_text()) for r in (one, two))
    assert m1["steps"] == m2["steps"] == 80 and m1["best_step"] == m2["best_step"]
    assert m1["validation"]["accuracy"] >= 0.9  # a real training trajectory, not a flat start
    assert m1["lr"] == m2["lr"]
    for key in ("loss", "accuracy", "f1_macro"):
        assert abs(m1["validation"][key] - m2["validation"][key]) < METRIC_TOL, key
    h1, h2 = _history(one), _history(two)
    assert [h["step"] for h in h1] == [h["step"] for h in h2]
    for a, b in zip(h1, h2):  # train loss averaged over processes, eval gathered from both
        assert abs(a["train_loss"] - b["train_loss"]) < METRIC_TOL
        assert abs(a["validation"]["loss"] - b["validation"]["loss"]) < METRIC_TOL
    assert _max_weight_diff(one, two, skip=NOISE_ONLY) < WEIGHT_TOL
    c1, c2 = (json.loads((r / "cost.json").read_text()) for r in (one, two))
    assert (c1["device_count"], c2["device_count"]) == (1, 2)  # device-hours count every process
    assert c1["train_samples"] == c2["train_samples"] and c1["train_tokens"] == c2["train_tokens"]
    assert c2["train_padded_tokens"] <= c1["train_padded_tokens"]  # each pads only its own rows
    state = json.loads(next((two / "checkpoints").glob("step-*/state.json")).read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not list(two.rglob(".tmp*")) and not list(two.rglob(".*.tmp*"))


def test_resume_with_the_same_world_size_matches_uninterrupted(one_and_two, tmp_path):
    import paretune
    from paretune.errors import TrainingError

    _, two = one_and_two
    # What a kill at step 50 leaves (test_resume.py kills a real one-process run): checkpoints up
    # to step 40, evaluations after it that resume must redo, no final files.
    crashed = tmp_path / "crashed"
    shutil.copytree(two, crashed)
    for name in ("metrics.json", "cost.json", "README.md", "model", "checkpoints/step-00000060"):
        target = crashed / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert [p.name for p in (crashed / "checkpoints").glob("step-*")] == ["step-00000040"]

    with pytest.raises(TrainingError, match="written by 2 process"):  # refused before launching
        paretune.resume(crashed, nproc=3)
    resumed = _paretune(["train", "--resume", str(crashed)])  # 2 processes, from the saved config
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = (json.loads((r / "metrics.json").read_text()) for r in (two, crashed))
    assert a["steps"] == b["steps"] and a["best_step"] == b["best_step"]
    assert abs(a["validation"]["loss"] - b["validation"]["loss"]) < METRIC_TOL
    assert [h["step"] for h in _history(two)] == [h["step"] for h in _history(crashed)]
    assert _max_weight_diff(two, crashed) < WEIGHT_TOL


def test_one_process_refuses_a_two_process_checkpoint(tmp_path):
    from paretune.engine.checkpoint import check_world_size
    from paretune.errors import TrainingError

    folder = tmp_path / "step-00000004"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"world_size": 2}))
    with pytest.raises(TrainingError, match=r"written by 2 process\(es\) and this run has 1.*--nproc 2"):
        check_world_size(folder, 1)
    check_world_size(folder, 2)


def test_tolerance_catches_unweighted_shares():
    """Averaging per-process mean losses (no share weights) changes the gradient of a batch
    whose rows split unevenly by far more than the tolerances above allow."""
    import torch

    torch.manual_seed(0)
    w = torch.randn(8, requires_grad=True)
    x, y = torch.randn(5, 8), torch.randn(5)

    def grad(loss):
        w.grad = None
        loss.backward()
        return w.grad.clone()

    def parts():  # each process's mean loss over its rows: 3 and 2 of 5
        return [((x[r::2] @ w - y[r::2]) ** 2).mean() for r in (0, 1)]

    whole = grad(((x @ w - y) ** 2).mean())
    weighted = grad(sum(p * (n / 5) * 2 for p, n in zip(parts(), (3, 2))) / 2)
    unweighted = grad(sum(parts()) / 2)
    assert float((weighted - whole).abs().max()) < 1e-6
    assert float((unweighted - whole).abs().max()) > 100 * WEIGHT_TOL


def test_every_process_plans_the_same_global_batches():
    from paretune.data.batching import BatchPlan

    lengths = np.random.default_rng(0).integers(3, 40, size=301)
    labelled = np.random.default_rng(1).integers(0, 5, size=301)  # NER: labelled tokens per row
    one = BatchPlan(lengths, batch_tokens=200, seed=3)
    ranks = [BatchPlan(lengths, batch_tokens=200, seed=3, num_replicas=2, rank=r, loss_units=labelled)
             for r in (0, 1)]
    assert len(one) == len(ranks[0]) == len(ranks[1])
    for i, (whole, a, b) in enumerate(zip(one, *ranks)):
        sa, sb = ranks[0].share(i), ranks[1].share(i)
        if len(whole) == 1:  # one long row: rank 1 reruns it as a stand-in that adds nothing
            assert a == b == whole and sb.loss_weight == 0
        else:
            assert sorted(a + b) == sorted(whole)  # disjoint shares of the same global batch
        assert sa.rows == len(whole) and sa.tokens == int(lengths[whole].sum())
        assert sa.loss_weight + sb.loss_weight == pytest.approx(1.0)
        if labelled[whole].sum():
            assert sa.loss_weight == pytest.approx(labelled[a].sum() / labelled[whole].sum())


def test_a_batch_smaller_than_the_world_gives_a_zero_weight_stand_in():
    from paretune.data.batching import BatchPlan

    plan = BatchPlan(np.array([5, 6, 7]), batch_size=2, shuffle=False, num_replicas=2, rank=1)
    assert list(plan) == [[1], [2]]  # batch [2] has no row for rank 1: it reruns row 2
    assert [plan.share(i).loss_weight for i in range(2)] == [0.5, 0.0]


def test_strategy_options_become_accelerate_plugins():
    from accelerate.utils import DistributedType

    from paretune.config import config_from_dict
    from paretune.config.distributed import DistributedConfig
    from paretune.engine.strategy import deepspeed_plugin, fsdp_plugin, resolve_strategy
    from paretune.errors import ConfigError

    dist = DistributedConfig(strategy="fsdp", fsdp={"version": 1, "sharding": "shard_grad_op", "auto_wrap": "size"})
    plugin = fsdp_plugin(dist.fsdp)
    assert plugin.fsdp_version == 1 and plugin.use_orig_params and plugin.min_num_params == 100_000_000
    assert "SHARD_GRAD_OP" in str(plugin.reshard_after_forward)
    assert fsdp_plugin(DistributedConfig().fsdp).reshard_after_forward is True  # FSDP2, full shard

    cfg = config_from_dict({"data": {"train": "x.csv"}, "training": {"max_grad_norm": 0.5},
                            "distributed": {"strategy": "deepspeed", "deepspeed": {"zero_stage": 3}}})
    ds = deepspeed_plugin(cfg.distributed.deepspeed, cfg.training).deepspeed_config
    assert ds["zero_optimization"]["stage"] == 3 and ds["gradient_clipping"] == 0.5
    assert ds["gradient_accumulation_steps"] == 1 and ds["train_micro_batch_size_per_gpu"] == 1

    assert resolve_strategy(DistributedConfig(), "cpu") == "ddp"
    for strategy in ("fsdp", "deepspeed"):
        with pytest.raises(ConfigError, match=f"{strategy} needs CUDA GPUs"):
            resolve_strategy(DistributedConfig(strategy=strategy), "cpu")
    with pytest.raises(ConfigError, match="offload_params needs zero_stage: 3"):
        config_from_dict({"data": {"train": "x.csv"}, "distributed": {"deepspeed": {"offload_params": "cpu"}}})
    assert DistributedType.MULTI_CPU  # the type a 2-process CPU run gets (gloo)


def test_nproc_refuses_to_launch_inside_a_launcher(monkeypatch):
    from paretune.cli.train import _check_not_launched
    from paretune.errors import ParetuneError

    _check_not_launched()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ParetuneError, match="drop --nproc"):
        _check_not_launched()


def test_launcher_reports_a_workers_user_error_once_and_a_crash_by_rank(tmp_path, monkeypatch):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from paretune.distributed.launch import _launch_error, record_user_error
    from paretune.errors import TrainingError

    killed = ChildFailedError("paretune.distributed.worker", {
        1: ProcessFailure(local_rank=1, pid=1, exitcode=-9, error_file=str(tmp_path / "none.json"))})
    err = _launch_error(killed, tmp_path)
    assert isinstance(err, TrainingError) and "process 1 with signal 9" in str(err)

    monkeypatch.setenv("PARETUNE_ERROR_DIR", str(tmp_path))
    record_user_error(0, "run folder runs/x already exists")
    assert str(_launch_error(killed, tmp_path)) == "run folder runs/x already exists"

"""Tracking backends read back: TensorBoard event files and the MLflow SQLite store."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paretune.errors import ConfigError


def read_events(logdir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str]]:
    from tensorboardX.event_file_writer import event_pb2  # the Event protobuf tensorboardX writes

    scalars: dict[str, list[tuple[int, float]]] = {}
    texts: dict[str, str] = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):  # TFRecord: length (8), crc (4), payload, crc (4)
            length = int.from_bytes(data[offset:offset + 8], "little")
            payload = data[offset + 12:offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.string_val:
                    texts[value.tag.removesuffix("/text_summary")] = value.tensor.string_val[0].decode()
                else:
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars, texts


def _train(tiny_config, **tracking):
    from paretune.runner import finetune

    tiny_config["training"].update(epochs=2)
    return finetune({**tiny_config, "tracking": tracking})




def test_tensorboard_events_hold_metrics_lr_and_cost(tiny_config, one_torch_thread, tmp_path):
    run = _train(tiny_config, backends=["tensorboard"], dir=str(tmp_path / "track"), flush_every=2)
    logdir = tmp_path / "track" / "tensorboard" / run.path.name
    scalars, texts = read_events(logdir)
    steps = run.metrics["steps"]
    assert [s for s, _ in scalars["train/lr"]] == list(range(1, steps + 1))  # lr every step
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, steps + 1))  # and the loss
    # Per-step losses (read in batches of 2) average to the evaluation record's loss over its epoch.
    first = json.loads((run.path / "metrics.jsonl").read_text().splitlines()[0])
    epoch_one = [v for s, v in scalars["train/loss"] if s <= first["step"]]
    assert sum(epoch_one) / len(epoch_one) == pytest.approx(first["train_loss"], rel=1e-5)
    assert scalars["train/mean_loss"][0] == (first["step"], pytest.approx(first["train_loss"], rel=1e-6))
    evals = [s for s, _ in scalars["validation/accuracy"]]
    assert evals == [steps // 2, steps]  # one per epoch
    assert scalars["final/validation/accuracy"][0][1] == pytest.approx(run.metrics["validation"]["accuracy"])
    assert scalars["cost/wall_s"][0][1] == pytest.approx(run.cost["wall_s"])
    assert "training.lr" in texts["config"] and "README.md" in texts


def test_mlflow_run_holds_params_metrics_and_card(tiny_config, one_torch_thread, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    run = _train(tiny_config, backends=["mlflow"], mlflow_uri=uri, experiment="tiny")
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == run.path.name
    assert found.data.params["training.lr"] == "0.001"
    history = client.get_metric_history(found.info.run_id, "validation.accuracy")
    assert [m.step for m in history][-1] == run.metrics["steps"]
    assert found.data.metrics["cost.wall_s"] == pytest.approx(run.cost["wall_s"])
    assert len(client.get_metric_history(found.info.run_id, "train.lr")) == run.metrics["steps"]
    losses = sorted((m.step, m.value) for m in client.get_metric_history(found.info.run_id, "train.loss"))
    assert [s for s, _ in losses] == list(range(1, run.metrics["steps"] + 1))
    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    last = [v for s, v in losses if s > records[0]["step"]]  # the second epoch's steps
    assert sum(last) / len(last) == pytest.approx(records[-1]["train_loss"], rel=1e-5)
    files = {f.path for f in client.list_artifacts(found.info.run_id)}
    assert {"README.md", "cost.json", "metrics.json"} <= files
    assert (Path(run.path).parent / "mlartifacts").is_dir()  # beside the store, not in the cwd


def test_sweep_variants_are_grouped_runs_with_a_frontier(tiny_config, one_torch_thread, tmp_path):
    pytest.importorskip("mlflow")
    import yaml
    from mlflow.tracking import MlflowClient

    from paretune.sweep import load_sweep, run_sweep

    tiny_config["training"].update(epochs=1)
    base = {k: v for k, v in tiny_config.items() if k != "output"}
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    base["tracking"] = {"mlflow_uri": uri}
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "tiny-sweep", "base": base, "dir": str(tmp_path / "sw"),
                                          "variants": [{"name": "full"}, {"name": "lora", "method.name": "lora"}]}))
    result = run_sweep(load_sweep(sweep_file), track=["mlflow", "tensorboard"])
    assert result.count("finished") == 2
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny-sweep").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["frontier", "full", "lora"]
    assert {r.data.tags.get("paretune.sweep") for r in runs if r.info.run_name != "frontier"} == {"tiny-sweep"}
    frontier = next(r for r in runs if r.info.run_name == "frontier")
    assert "frontier.md" in {f.path for f in client.list_artifacts(frontier.info.run_id)}
    variants = {r.info.run_name: r for r in runs if r.info.run_name != "frontier"}
    for name, found in variants.items():  # each variant: its own run, its card, its values
        run_dir = next((tmp_path / "sw" / "runs").glob(f"{name}*/metrics.json")).parent
        quality = json.loads((run_dir / "metrics.json").read_text())["validation"]["accuracy"]
        assert "README.md" in {f.path for f in client.list_artifacts(found.info.run_id)}
        assert found.data.metrics["final.validation.accuracy"] == pytest.approx(quality)
        assert frontier.data.metrics[f"frontier.{name}.quality"] == pytest.approx(quality)
        assert f"frontier.{name}.pareto_train" in frontier.data.metrics
    tb = tmp_path / "sw" / "runs" / "tensorboard" / "tiny-sweep"
    assert {p.name for p in tb.iterdir()} >= {"full", "lora", "frontier"}
    scalars, texts = read_events(tb / "lora")
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in scalars["train/lr"]] != []
    assert "README.md" in texts
    frontier_tb, _ = read_events(tb / "frontier")
    assert frontier_tb["frontier/full/quality"][0][1] == pytest.approx(variants["full"].data.metrics[
        "final.validation.accuracy"])


def test_missing_backend_package_is_a_clear_error_before_training(tiny_config, tmp_path, monkeypatch):
    import importlib.util

    from paretune.runner import finetune

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="wandb package"):
        finetune({**tiny_config, "tracking": {"backends": ["wandb"]}})
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_tracking_folder_that_cannot_be_written_is_a_clear_error(tiny_config, tmp_path):
    from paretune.config.schema import TrackingConfig
    from paretune.runner import finetune
    from paretune.tracking import check_tracking

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    tracking = {"backends": ["tensorboard"], "dir": str(blocked / "tracking")}
    with pytest.raises(ConfigError, match=r"tracking folder .*a-file/tracking cannot be written"):
        check_tracking(TrackingConfig(**tracking), tmp_path / "run")  # what runs before the run folder is made
    with pytest.raises(ConfigError, match="set tracking.dir"):  # not a raw NotADirectoryError
        finetune({**tiny_config, "tracking": tracking})
    assert not Path(tiny_config["output"]["dir"]).exists()  # no half-made run folder blocks the rerun
    check_tracking(TrackingConfig(backends=[], dir=str(blocked / "tracking")), tmp_path / "run")  # none asked for


def test_step_losses_stay_on_the_device_until_a_flush(tiny_config, tmp_path, monkeypatch):
    """Every step is logged, but the losses are read (a device sync) only every flush_every steps."""
    from types import SimpleNamespace

    import torch

    from paretune.runner import settled_config
    from paretune.tracking import session

    sent: list[tuple[int, dict]] = []
    tracker = SimpleNamespace(params=lambda p: None, metrics=lambda v, step: sent.append((step, v)),
                              close=lambda failed=False: None)
    monkeypatch.setattr(session, "open_trackers", lambda config, run_dir: [tracker])
    config = settled_config({**tiny_config, "tracking": {"flush_every": 2}})
    hooks = session.RunHooks(config, tmp_path, meter=None, method=SimpleNamespace(on_step=None),
                             main_process=True, append_metrics=lambda record: None)
    trainer = SimpleNamespace(scheduler=SimpleNamespace(get_last_lr=lambda: [0.5]), step_loss=None)
    hooks.trainer = trainer
    for step in range(1, 4):
        trainer.step_loss = torch.tensor(float(step))
        hooks.on_step(None, step)
        assert [s for s, _ in sent] == [1, 2][: step // 2 * 2]  # nothing read before a flush
    hooks.close()
    assert sent == [(s, {"train/lr": 0.5, "train/loss": float(s)}) for s in (1, 2, 3)]

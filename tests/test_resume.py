"""A run killed with SIGKILL mid-epoch and resumed ends exactly where an uninterrupted run ends."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def _train(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    exe = shutil.which("paretune") or sys.executable
    cmd = [exe, *args] if exe != sys.executable else [exe, "-m", "paretune", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture()
def resume_config(tiny_config, tmp_path):
    cfg = dict(tiny_config)
    # 10 steps per epoch; checkpoints every 7 steps land mid-epoch (7, 14, ...).
    cfg["training"] = {**cfg["training"], "epochs": 4, "save_every": 7, "eval_every": 5,
                       "keep_checkpoints": 2}
    path = tmp_path / "resume.yaml"
    cfg.pop("output")
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(resume_config, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = _train(["train", str(resume_config), "--set", f"output.dir={straight}"])
    assert done.returncode == 0, done.stderr

    crashed = _train(["train", str(resume_config), "--set", f"output.dir={killed}"],
                     {"PARETUNE_FAULT_AT_STEP": "17"})
    assert crashed.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    assert (killed / "checkpoints" / "step-00000014").is_dir()  # newest checkpoint, mid-epoch 2
    logged_steps = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines()]
    assert 15 in logged_steps  # an evaluation after the checkpoint, which resume must redo

    resumed = _train(["train", "--resume", str(killed)])
    assert resumed.returncode == 0, resumed.stderr

    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    for key in ("loss", "accuracy", "f1_macro"):
        assert abs(a["validation"][key] - b["validation"][key]) < 1e-4, key
    assert a["steps"] == b["steps"] and a["best_step"] == b["best_step"]
    history_a = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
    history_b = [json.loads(l) for l in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history_a] == [h["step"] for h in history_b]
    for ha, hb in zip(history_a, history_b):
        assert abs(ha["validation"]["loss"] - hb["validation"]["loss"]) < 1e-4
    wa = load_file(str(straight / "model" / "model.safetensors"))
    wb = load_file(str(killed / "model" / "model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4


def test_resume_refuses_finished_and_empty_runs(tiny_config, tmp_path):
    import paretune
    from paretune.errors import ParetuneError

    run = paretune.finetune({**tiny_config, "training": {**tiny_config["training"], "max_steps": 3}})
    with pytest.raises(ParetuneError, match="already finished"):
        paretune.resume(run.path)
    with pytest.raises(ParetuneError, match="not a paretune run folder"):
        paretune.resume(tmp_path / "nowhere")

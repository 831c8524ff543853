"""`paretune sweep`: the sweep file, an end-to-end sweep on the tiny model, failures, resuming."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from paretune.errors import ConfigError, ParetuneError
from paretune.sweep import load_sweep, run_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def write_sweep(tiny_config, tmp_path):
    """Write base.yaml (the tiny config) and a sweep file over it; returns the sweep file's path."""
    base = {k: v for k, v in tiny_config.items() if k != "output"}
    base["training"] = {**base["training"], "max_steps": 3}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))

    def write(name: str = "sweep.yaml", **spec) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"base": "base.yaml", "dir": str(tmp_path / "out"), **spec}, sort_keys=False))
        return path

    return write


def records(folder: Path) -> dict:
    return json.loads((folder / "sweep.json").read_text())["variants"]


def test_variants_cross_the_grid_and_are_named_from_their_overrides(write_sweep):
    sweep = load_sweep(write_sweep(
        variants=[{"name": "small", "method.r": 4, "method.name": "lora"}, {"method.name": "full"}],
        grid={"training.lr": ["1e-4", 0.0003]},
    ))
    variants = sweep.variants()
    assert [v.name for v in variants] == ["small-lr1e-4", "small-lr0.0003", "full-lr1e-4", "full-lr0.0003"]
    # method.name goes first: switching method clears the method section, which would drop r.
    assert variants[0].override_strings() == ["method.name=lora", "method.r=4", "training.lr=1e-4"]
    configs = sweep.check_configs(variants)
    assert configs["small-lr1e-4"].method.r == 4 and configs["small-lr1e-4"].training.lr == 1e-4
    assert configs["full-lr0.0003"].output.dir == str((sweep.folder / "runs" / "full-lr0.0003").resolve())
    assert Path(configs["full-lr0.0003"].data.train).is_absolute()  # resolved against base.yaml's folder


def test_every_bad_variant_is_reported_before_anything_trains(write_sweep, tmp_path):
    path = write_sweep(variants=[{"name": "typo", "method.name": "lora", "method.rank": 4},
                                 {"name": "negative", "training.lr": -1}, {"name": "fine"}])
    with pytest.raises(ConfigError) as err:
        run_sweep(load_sweep(path))
    assert "variant typo" in str(err.value) and "method.rank: unknown key" in str(err.value)
    assert "variant negative" in str(err.value) and "training.lr" in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, message", [
    ({"variants": [{"name": "a"}, {"name": "a", "training.lr": 0.1}]}, "two variants are named 'a'"),
    ({"variants": [{"training.lr": 0.1}, {"name": "b", "training.lr": 0.1}]}, "same overrides"),
    ({"set": {"training.lr": 0.1}}, "nothing to run"),
    ({"variants": [{"lr": 0.1}]}, "dotted config keys"),
    ({"variants": [{"name": "a/b"}]}, "names a folder"),
    ({"variants": [{"output.dir": "x"}]}, "output.* cannot be overridden"),
    ({"base": "missing.yaml", "variants": [{}]}, "base config not found"),
])
def test_sweep_file_mistakes_are_named(write_sweep, spec, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(write_sweep(**spec)).variants()


def test_sweep_killed_midway_resumes_skips_finished_and_records_failures(write_sweep, tmp_path):
    """One sweep, end to end: four variants, one failing, the process SIGKILLed in the last one."""
    path = write_sweep(variants=[
        {"method.name": "full"},
        {"method.name": "freeze", "method.trainable_layers": 1},
        {"name": "broken", "data.text_column": "no_such_column"},  # fails at run time, in data checks
        {"name": "lora", "method.name": "lora", "method.r": 4,  # killed after step 5, checkpoint at 4
         "training.max_steps": 8, "training.save_every": 2, "training.eval_every": 2},
    ])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PARETUNE_FAULT_AT_STEP": "5"}
    crashed = subprocess.run([sys.executable, "-m", "paretune", "sweep", str(path)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    out = tmp_path / "out"
    state = records(out)
    assert [state[n]["status"] for n in ("full", "freeze-trainable_layers1", "broken", "lora")] == \
        ["finished", "finished", "failed", "running"]  # lora: claimed by a process that is gone
    assert "no_such_column" in state["broken"]["error"]  # the failure did not stop the variants after it
    for name in ("full", "freeze-trainable_layers1"):
        assert state[name]["metric"] == "accuracy" and 0 <= state[name]["value"] <= 1
        assert (out / "runs" / name / "model" / "model.safetensors").is_file()  # ordinary run folders
    assert (out / "runs" / "lora" / "checkpoints" / "step-00000004").is_dir()
    events = [json.loads(line)["event"] for line in (out / "variants.jsonl").read_text().splitlines()]
    assert events == ["finished", "finished", "failed"]
    stamps = {n: (out / "runs" / n / "metrics.json").stat().st_mtime_ns for n in ("full", "freeze-trainable_layers1")}

    result = run_sweep(load_sweep(path))
    assert result.names == ["full", "freeze-trainable_layers1", "broken", "lora"]
    assert (result.count("finished"), result.count("failed")) == (3, 1)
    assert {n: (out / "runs" / n / "metrics.json").stat().st_mtime_ns for n in stamps} == stamps  # not re-run
    assert result.records["lora"]["action"] == "resume" and result.records["lora"]["attempts"] == 2
    lora = json.loads((out / "runs" / "lora" / "metrics.json").read_text())
    assert lora["steps"] == 8 and result.records["lora"]["value"] == lora["validation"]["accuracy"]
    assert yaml.safe_load((out / "runs" / "lora" / "config.yaml").read_text())["method"]["r"] == 4
    assert result.records["broken"]["attempts"] == 2  # failed variants are retried, and fail again here

    changed = write_sweep("changed.yaml", variants=[{"name": "lora", "method.name": "lora", "method.r": 8}])
    with pytest.raises(ParetuneError, match="lora finished with overrides .* now gives"):
        run_sweep(load_sweep(changed))  # a finished variant is never silently kept with old settings


def test_cli_dry_run_lists_variants(write_sweep, tmp_path):
    from paretune.cli import _register, app

    _register()
    path = write_sweep(variants=[{"method.name": "lora"}], grid={"training.lr": [0.001, 0.01]})
    done = CliRunner().invoke(app, ["sweep", str(path), "--dry-run"])
    assert done.exit_code == 0, done.output
    assert "lora-lr0.001\tmethod.name=lora training.lr=0.001" in done.output
    assert "2 variants, all configs valid" in done.output
    assert not (tmp_path / "out").exists()

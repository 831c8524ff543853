"""The Ray backend: variants as Ray Tune trials on a local 2-CPU Ray, recorded in the sweep folder."""
from __future__ import annotations

import json

import pytest
import yaml

from paretune.sweep import load_sweep, run_sweep

pytest.importorskip("ray.tune")


def test_ray_sweep_records_trials_and_a_rerun_skips_finished(tiny_config, tmp_path):
    base = {k: v for k, v in tiny_config.items() if k != "output"}
    base["training"] = {**base["training"], "max_steps": 2}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {
        "base": "base.yaml", "dir": str(tmp_path / "out"),
        "variants": [{"name": "full"}, {"name": "lora", "method.name": "lora", "method.r": 4},
                     {"name": "broken", "data.text_column": "no_such_column"}],
        "ray": {"num_cpus": 2, "cpus_per_trial": 1},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"

    result = run_sweep(load_sweep(path), backend="ray")
    assert result.records["full"]["status"] == "finished" and result.records["lora"]["status"] == "finished"
    assert result.records["broken"]["status"] == "failed" and "no_such_column" in result.records["broken"]["error"]
    for name in ("full", "lora"):  # ordinary run folders in the sweep folder, as with the local backend
        metrics = json.loads((out / "runs" / name / "metrics.json").read_text())
        assert result.records[name]["value"] == metrics["validation"]["accuracy"]
    assert (out / "ray").is_dir()  # Tune's own logs stay beside the runs
    stamp = (out / "runs" / "full" / "metrics.json").stat().st_mtime_ns

    # Rerun with only the finished variants: nothing is handed to Ray, nothing retrains.
    spec["variants"] = spec["variants"][:2]
    path.write_text(yaml.safe_dump(spec))
    again = run_sweep(load_sweep(path), backend="ray")
    assert again.count("finished") == 2 and again.records["full"]["attempts"] == 1
    assert (out / "runs" / "full" / "metrics.json").stat().st_mtime_ns == stamp

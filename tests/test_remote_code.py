"""A run folder never runs code of its own: only the person loading it can allow that.

The folder here is booby-trapped as a shared one could be: model/ ships a `.py` that writes a
marker file when imported, config.json points transformers at it (auto_map), and config.yaml
claims `model.trust_remote_code: true`. Every loader must refuse it with a clear error and never
import the file, unless the caller passes trust_remote_code=True / --trust-remote-code.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import sentiment_rows, write_csv

import paretune
from paretune.errors import ParetuneError
from paretune.predictor import Predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHIPPED_CODE = '''
from pathlib import Path
Path({marker!r}).write_text("the run folder's code ran")

from transformers import BertConfig, BertForSequenceClassification


class ShippedConfig(BertConfig):
    pass


class ShippedModel(BertForSequenceClassification):
    config_class = ShippedConfig
'''


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("remote-code")
    run = paretune.finetune({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(write_csv(folder / "train.csv", sentiment_rows(32, seed=1))),
                 "validation": str(write_csv(folder / "validation.csv", sentiment_rows(8, seed=2))),
                 "max_length": 32, "cache_dir": str(folder / "cache")},
        "training": {"max_steps": 2, "batch_size": 16, "warmup_ratio": 0.0, "seed": 7, "save_every": 10_000},
        "output": {"dir": str(folder / "run")},
    })
    return run.path


def booby_trap(clean_run: Path, where: Path, claims_trust: bool = True) -> tuple[Path, Path]:
    """A copy of the run whose model/ ships code that leaves a marker; (run folder, marker path)."""
    run_dir, marker = where / "shared-run", where / "code-ran.txt"
    shutil.copytree(clean_run, run_dir)
    (run_dir / "model" / "shipped.py").write_text(SHIPPED_CODE.format(marker=str(marker)))
    config_json = run_dir / "model" / "config.json"
    config = json.loads(config_json.read_text())
    config["auto_map"] = {"AutoConfig": "shipped.ShippedConfig",
                          "AutoModelForSequenceClassification": "shipped.ShippedModel"}
    config_json.write_text(json.dumps(config))
    run_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    run_config["model"]["trust_remote_code"] = claims_trust
    (run_dir / "config.yaml").write_text(yaml.safe_dump(run_config))
    return run_dir, marker


@pytest.fixture()
def modules_cache(tmp_path, monkeypatch) -> Path:
    """Where transformers copies trusted model code: a temporary folder, not the user's cache."""
    import transformers.dynamic_module_utils as dynamic

    cache = tmp_path / "hf-modules"
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(cache))
    monkeypatch.setenv("HF_MODULES_CACHE", str(cache))  # for the CLI subprocess
    return cache


def _compress(run_dir: Path):
    from paretune.compression.run import compress_run

    return compress_run(run_dir, "int8-dynamic")


def _distill(run_dir: Path):
    from paretune.distillation.run import distill_run

    return distill_run(run_dir, "teacher:layers=0")


def _bench(run_dir: Path):
    from paretune.cost.inference import bench_inference

    return bench_inference(run_dir, repeats=2, progress=False)


def _serve(run_dir: Path):
    from paretune.serving.server import load_predictor

    return load_predictor(run_dir, "cpu")


@pytest.mark.parametrize("load", [lambda run_dir: Predictor.load(run_dir, device="cpu"), _compress, _distill,
                                  _bench, _serve],
                         ids=["predictor", "compress", "distill", "bench-infer", "serve"])
def test_loaders_refuse_a_run_that_claims_trust(clean_run, tmp_path, modules_cache, load):
    run_dir, marker = booby_trap(clean_run, tmp_path)
    with pytest.raises(ParetuneError) as caught:
        load(run_dir)
    message = str(caught.value)
    assert str(run_dir) in message and "custom Python code" in message and "--trust-remote-code" in message
    assert not marker.exists()


def test_predictor_with_trust_runs_the_shipped_code(clean_run, tmp_path, modules_cache):
    run_dir, marker = booby_trap(clean_run, tmp_path)
    predictor = Predictor.load(run_dir, device="cpu", trust_remote_code=True)
    assert marker.exists()  # the caller allowed it
    assert type(predictor.model).__name__ == "ShippedModel"
    assert predictor.predict(["a lovely film"])[0]["label"] in ("negative", "positive")


def test_a_config_yaml_without_the_claim_still_never_imports_shipped_code(clean_run, tmp_path, modules_cache):
    """The guarantee is the mechanism (transformers told False), not the folder's honesty."""
    run_dir, marker = booby_trap(clean_run, tmp_path, claims_trust=False)
    Predictor.load(run_dir, device="cpu").predict(["a lovely film"])
    assert not marker.exists()


def paretune_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "paretune", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_predict_command_needs_the_flag(clean_run, tmp_path, modules_cache):
    run_dir, marker = booby_trap(clean_run, tmp_path)
    texts = write_csv(tmp_path / "texts.csv", [("a lovely film", ""), ("a dull plot", "")])
    output = tmp_path / "predictions.jsonl"
    refused = paretune_cli("predict", str(run_dir), "-i", str(texts), "-o", str(output), cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "--trust-remote-code" in refused.stderr and str(run_dir) in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not marker.exists() and not output.exists()

    allowed = paretune_cli("predict", str(run_dir), "-i", str(texts), "-o", str(output), "--trust-remote-code",
                           cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert marker.exists() and len(output.read_text().splitlines()) == 2

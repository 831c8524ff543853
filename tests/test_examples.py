"""Every shipped example config parses, names data that exists, and trains a few steps.

The runs use the tiny random model in place of the packaged MiniLM, so they check wiring (the
config, its data files and the task), not the accuracy that each config's header promises.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import paretune
from paretune.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SWEEPS = sorted(EXAMPLES.glob("sweep*.yaml"))  # sweep files, tested by their own command below
CONFIGS = sorted(set(EXAMPLES.glob("*.yaml")) - set(SWEEPS))


def test_examples_are_shipped():
    assert CONFIGS, f"no example configs found in {EXAMPLES}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_parses_and_its_data_exists(path):
    config = load_config(path)
    named = {key: getattr(config.data, key) for key in ("train", "validation", "test")}
    for key, file in named.items():
        if file is not None:  # a file, or a folder of class folders (images)
            assert Path(file).exists(), f"{path.name}: data.{key} = {file} does not exist"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_trains_a_few_steps(path, tiny_model_dir, tiny_vit_dir, tmp_path):
    from paretune.tasks import task_class

    task_type = load_config(path).task.type
    images = task_class(task_type).takes_images
    model_dir = tiny_vit_dir if images else tiny_model_dir
    if task_type in ("generation", "preference"):  # a decoder with a chat template, words of its data
        from generation_fixtures import tiny_llama_dir, words_of

        data = EXAMPLES / "data" / ("chat" if task_type == "generation" else task_type)
        model_dir = tiny_llama_dir(tmp_path / "llama", extra_words=words_of(*data.iterdir()))
    run = paretune.finetune(path, overrides=[
        f"model.name_or_path={model_dir}",
        "training.max_steps=3",
        "data.max_train_rows=64",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"output.dir={tmp_path / 'run'}",
        *(["task.image_size=16", "task.workers=0"] if images else []),  # the tiny ViT's input size
    ])
    metrics = json.loads((run.path / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["steps"] == 3
    assert metrics["validation"], "the final evaluation on the validation file is missing"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_example_sweep_parses_and_runs_a_few_steps(path, tiny_model_dir, tmp_path):
    from paretune.sweep import load_sweep, run_sweep

    sweep = load_sweep(path, tmp_path / "sweep")
    sweep.check_configs(sweep.variants())  # every variant of the shipped file, as written
    sweep.spec.set.update({"model.name_or_path": str(tiny_model_dir), "training.max_steps": 2,
                           "data.max_train_rows": 64, "data.cache_dir": str(tmp_path / "cache"),
                           "data.max_length": 32})  # room for prompt tuning's virtual tokens in 64 positions
    sweep.spec.bench_inference, sweep.spec.search = False, None
    result = run_sweep(sweep)
    assert result.count("finished") == len(sweep.variants()), result.records


def test_make_data_regenerates_the_committed_files(tmp_path):
    committed = EXAMPLES / "data"
    if not committed.is_dir():
        pytest.fail(f"{committed} is missing: run `python examples/make_data.py` and commit its output")
    # Run from another folder: the script must not depend on the working directory.
    subprocess.run([sys.executable, str(EXAMPLES / "make_data.py"), "--out", str(tmp_path)],
                   check=True, cwd=tmp_path, capture_output=True)
    written = file_names(tmp_path)
    # examples/data/shapes/ is make_images.py's (test_make_images_regenerates_the_committed_images).
    assert written == [name for name in file_names(committed) if not name.startswith("shapes/")]
    for name in written:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), (
            f"examples/data/{name} differs from what make_data.py writes: regenerate and commit it"
        )


def file_names(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_make_images_regenerates_the_committed_images(tmp_path):
    subprocess.run([sys.executable, str(EXAMPLES / "make_images.py"), "--out", str(tmp_path)],
                   check=True, cwd=tmp_path, capture_output=True)
    committed = EXAMPLES / "data" / "shapes"
    assert file_names(tmp_path) == file_names(committed)
    for name in file_names(committed):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), (
            f"examples/data/shapes/{name} differs from what make_images.py writes: regenerate and commit it"
        )

"""`paretune eval RUN --lm-eval TASKS` on a tiny random Llama LoRA run: the shipped local task and a
task YAML given by path score what lm-eval's own API scores on the same merged model folder, and a
model handed over as an object scores the same as its folder (evaluation/lm_eval_run.py)."""
from __future__ import annotations

import json
import shutil

import pytest
from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl
from typer.testing import CliRunner

import paretune
from paretune.cli import _register, app
from paretune.errors import ParetuneError
from paretune.evaluation.lm_eval_run import SHIPPED_TASKS, run_lm_eval

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-eval")
    config = {
        "model": {"name_or_path": str(tiny_llama_dir(folder / "tiny-llama"))},
        "task": {"type": "generation", "generate_rows": 0, "max_new_tokens": 2},
        "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(16, 1))),
                 "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(4, 2))),
                 "max_length": 48, "cache_dir": str(folder / "cache")},
        "method": {"name": "lora", "r": 4},
        "training": {"max_steps": 2, "batch_size": 8, "lr": 1e-2, "seed": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "run")},
    }
    return paretune.finetune(config)


def _own_task(folder):
    """A user's task: the shipped one copied under another name, with its data beside it."""
    folder.mkdir()
    for name in ("utils.py", "capitals.jsonl"):
        shutil.copy(SHIPPED_TASKS / name, folder / name)
    text = (SHIPPED_TASKS / "paretune_capitals.yaml").read_text().replace("task: paretune_capitals", "task: my_capitals")
    (folder / "my_capitals.yaml").write_text(text)
    return folder / "my_capitals.yaml"


@pytest.fixture(scope="module")
def reference(run):
    """lm-eval's own API on the run's merged model folder, as the `lm_eval` command loads it."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    output = simple_evaluate(model="hf", model_args=f"pretrained={run.path / 'model'},dtype=float32,device=cpu",
                             tasks=["paretune_capitals"], bootstrap_iters=0,
                             task_manager=TaskManager(include_path=str(SHIPPED_TASKS), include_defaults=False))
    return output["results"]["paretune_capitals"]


def test_scores_equal_lm_evals_own_api_on_the_merged_model_folder(run, reference, tmp_path):
    own = _own_task(tmp_path / "tasks")
    _register()
    result = CliRunner().invoke(app, ["eval", str(run.path), "--lm-eval", f"paretune_capitals,{own}",
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout.strip().splitlines()[-1])
    assert ours["paretune_capitals/sample_len"] == 20 and 0 <= ours["paretune_capitals/acc"] <= 1
    assert ours["paretune_capitals/acc"] == reference["acc,none"]
    assert ours["paretune_capitals/acc_norm"] == reference["acc_norm,none"]
    assert ours["my_capitals/acc"] == ours["paretune_capitals/acc"]  # the same rows, by the YAML's path


def test_a_model_object_scores_as_its_folder_and_unknown_tasks_are_named(run, reference):
    """The path other stored forms take (loaded by paretune, handed over as a model)."""
    predictor = paretune.Predictor.load(run.path)
    as_object = run_lm_eval(predictor.model, "paretune_capitals", tokenizer=predictor.tokenizer)
    assert as_object["paretune_capitals"]["acc"] == reference["acc,none"]
    assert as_object["paretune_capitals"]["acc_norm"] == reference["acc_norm,none"]
    with pytest.raises(ParetuneError, match="unknown task.*hellaswag.*local tasks: paretune_capitals"):
        run_lm_eval(run.path / "model", "hellaswag")
    _register()
    refused = CliRunner().invoke(app, ["eval", str(run.path)])
    assert refused.exit_code != 0 and "--data FILE (a labelled file) or --lm-eval TASKS" in str(refused.exception)

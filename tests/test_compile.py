"""training.compile: a compiled model takes the plain model's steps, keeps its weight names, and is
not compiled again for every batch width.

The default tests compile a small module with dynamo's `aot_eager` backend (graph capture, AOT
autograd, dynamic shapes: the wiring) in seconds. The end-to-end run with inductor compiles HF
Llama's forward and backward to C++: 415 s on the shared 2-core CPU (158 s with aot_eager), so it
runs only with PARETUNE_TEST_COMPILE=1.
"""
from __future__ import annotations

import json
import os

import pytest
import torch
from generation_fixtures import instruction_rows, tiny_llama_dir, write_jsonl
from safetensors.torch import load_file

import paretune
from paretune.engine import compile as compile_module
from paretune.engine.compile import AUTO_MIN_STEPS, _reason
from paretune.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(model_dir, folder, compile_mode):
    folder.mkdir()
    rows = str(write_jsonl(folder / "train.jsonl", instruction_rows(8, 5)))
    return paretune.finetune({
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "generation", "generate_rows": 0, "train_on_prompt": True},
        "data": {"train": rows, "validation": rows, "max_length": 48, "cache_dir": str(folder / "cache")},
        "method": {"name": "full"},
        # Rows of different lengths: batches of different widths, which must not recompile each step.
        "training": {"max_steps": 3, "batch_size": 3, "optimizer": "sgd", "max_grad_norm": None, "lr": 0.5,
                     "warmup_ratio": 0.0, "seed": 1, "compile": compile_mode, "eval_every": 3},
        "output": {"dir": str(folder / "run")},
    })


class Tagger(torch.nn.Module):
    """Embedding, a layer and a per-token head: every batch shape flows through like a real model."""

    def __init__(self):
        super().__init__()
        self.embed, self.layer, self.head = torch.nn.Embedding(50, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 5)

    def forward(self, ids):
        return self.head(torch.tanh(self.layer(self.embed(ids))))


def _steps(model, batches):
    losses, grads = [], []
    for ids in batches:
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids).reshape(-1, 5), (ids % 5).reshape(-1))
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    return losses, grads


def test_compiled_in_place_same_losses_plain_names_and_no_compile_per_batch_width(monkeypatch):
    monkeypatch.setattr(compile_module, "BACKEND", "aot_eager")
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 50, (rows, width), generator=generator) for rows, width in
               [(4, 7), (3, 11), (5, 9), (2, 13), (6, 5)]]
    torch.manual_seed(0)
    plain = Tagger()
    compiled = Tagger()
    compiled.load_state_dict(plain.state_dict())
    record = compile_module.compile_for_training(compiled, True, "cpu", 5, "none")
    expected, got = _steps(plain, batches), _steps(compiled, batches)
    for a, b in zip(expected[0], got[0]):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    for a, b in zip(expected[1], got[1]):
        for name in a:
            torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-5, msg=name)
    assert list(compiled.state_dict()) == list(plain.state_dict())  # no _orig_mod. prefix
    # Five widths: the first shape, then one graph with symbolic sizes for all the others.
    assert record.summary()["graphs_compiled"] == 2, record.summary()
    record.release()
    assert compiled._compiled_call_impl is None


@pytest.mark.skipif(os.environ.get("PARETUNE_TEST_COMPILE") != "1", reason="minutes: set PARETUNE_TEST_COMPILE=1")
def test_a_compiled_run_takes_the_plain_steps_and_saves_plain_names(tmp_path):
    model_dir = tiny_llama_dir(tmp_path / "tiny-llama")
    plain = _run(model_dir, tmp_path / "plain", False)
    compiled = _run(model_dir, tmp_path / "compiled", True)
    weights = [load_file(run.path / "model" / "model.safetensors") for run in (plain, compiled)]
    assert weights[0].keys() == weights[1].keys() and not any("_orig_mod" in k for k in weights[1])
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, atol=1e-5, rtol=1e-5, msg=name)
    assert compiled.validation["perplexity"] == pytest.approx(plain.validation["perplexity"], rel=1e-5)
    record = json.loads((compiled.path / "cost.json").read_text())["compile"]
    # Training and evaluation graphs, plus one per graph break (9 graphs and 12 breaks measured here).
    assert record["graphs_compiled"] >= 1 and record["backend"] == "inductor", record
    assert "compile" not in json.loads((plain.path / "cost.json").read_text())


def test_auto_compiles_long_cuda_runs_only_and_true_refuses_sharding():
    assert _reason("auto", "cpu", 10_000, "none") is None
    assert _reason("auto", "cuda", AUTO_MIN_STEPS - 1, "none") is None
    assert _reason("auto", "cuda", AUTO_MIN_STEPS, "none").startswith("auto")
    assert _reason("auto", "cuda", 10_000, "fsdp") is None
    assert _reason(False, "cuda", 10_000, "none") is None
    with pytest.raises(ConfigError, match="training.compile"):
        _reason(True, "cuda", 10, "deepspeed")


def test_auto_says_what_its_decision_rests_on(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="paretune"):
        assert compile_module.compile_for_training(torch.nn.Linear(2, 2), "auto", "cpu", 10_000, "none") is None
    assert "training.compile auto: off" in caplog.text and "measured" in caplog.text
    assert "stated" in _reason("auto", "cuda", AUTO_MIN_STEPS, "none")

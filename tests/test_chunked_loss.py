"""The chunked LM-head loss and gradient checkpointing give the plain path's loss and gradients
(fp32, 1e-5) on a tiny random Llama, directly and through the training loop."""
from __future__ import annotations

import pytest
import torch
from generation_fixtures import chat_tokenizer, instruction_rows, tiny_llama_dir, write_jsonl
from safetensors.torch import load_file

import paretune
from paretune.data.examples import Example
from paretune.engine.activation_checkpointing import enable_gradient_checkpointing
from paretune.engine.chunked_loss import ChunkedLoss, chunked_loss_for
from paretune.errors import ConfigError
from paretune.tasks.generation import GenerationOptions, GenerationTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def batch():
    task = GenerationTask(GenerationOptions(train_on_prompt=True), [])
    examples = [Example([{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}],
                        r["completion"], i) for i, r in enumerate(instruction_rows(6, 3), 1)]
    encoded = task.encode(examples, [ex.label for ex in examples], chat_tokenizer(), 64)
    return task, task.collate(encoded, list(range(6)), 0)


def _model(llama_dir, lora=False):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(llama_dir, use_cache=False)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    return model.train()  # dropout is 0 in the tiny config: train mode only switches checkpointing on


def _loss_and_grads(model, task, batch, chunked: ChunkedLoss | None = None):
    model.zero_grad()
    inputs = {k: batch[k] for k in task.model_inputs}
    if chunked is None:
        loss = task.loss(model(**inputs).logits, batch["labels"])
    else:
        with chunked.hidden_states():
            hidden = model(**inputs).logits
        loss = chunked(hidden, batch["labels"])
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(plain, other):
    assert other[0].item() == pytest.approx(plain[0].item(), abs=1e-5)
    assert plain[1].keys() == other[1].keys() and plain[1]
    for name, grad in plain[1].items():
        torch.testing.assert_close(other[1][name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_chunked_loss_gives_the_plain_loss_and_gradients(llama_dir, batch):
    task, tensors = batch
    model = _model(llama_dir)
    plain = _loss_and_grads(model, task, tensors)
    chunked = chunked_loss_for(model, task, True, "none")
    chunked.chunk_tokens = 7  # several chunks and a short last one
    assert len(tensors["labels"]) > 3 * chunked.chunk_tokens
    _assert_same(plain, _loss_and_grads(model, task, tensors, chunked))
    assert type(model.get_output_embeddings()).forward is model.get_output_embeddings().forward.__func__  # restored
    assert chunked.zero(torch.zeros(0, 32)).item() == 0.0


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_gives_the_plain_loss_and_gradients(llama_dir, batch, lora):
    task, tensors = batch
    plain = _loss_and_grads(_model(llama_dir, lora), task, tensors)
    model = _model(llama_dir, lora)
    enable_gradient_checkpointing(model)
    assert (model.get_base_model() if lora else model).model.gradient_checkpointing
    _assert_same(plain, _loss_and_grads(model, task, tensors))


def test_auto_chunks_only_large_batches_and_true_refuses_a_task_without_an_lm_loss(llama_dir, batch):
    task, tensors = batch
    model = _model(llama_dir)
    auto = chunked_loss_for(model, task, "auto", "none")
    assert not auto.wanted(tensors["labels"]) and auto.wanted(torch.zeros(2**26))
    assert chunked_loss_for(model, task, False, "none") is None
    assert chunked_loss_for(model, task, "auto", "fsdp") is None
    classification = type("Classification", (), {"name": "classification"})()
    assert chunked_loss_for(model, classification, "auto", "none") is None
    with pytest.raises(ConfigError, match="chunked_loss"):
        chunked_loss_for(model, classification, True, "none")


def test_a_run_with_both_takes_the_plain_runs_steps(llama_dir, tmp_path):
    """Two SGD steps through the loop end on the same weights with chunked loss and checkpointing."""
    weights = []
    for name, extra in [("plain", {"chunked_loss": False}),
                        ("both", {"chunked_loss": True, "gradient_checkpointing": True})]:
        folder = tmp_path / name
        folder.mkdir()
        rows = str(write_jsonl(folder / "train.jsonl", instruction_rows(8, 5)))
        run = paretune.finetune({
            "model": {"name_or_path": str(llama_dir)},
            "task": {"type": "generation", "generate_rows": 0, "train_on_prompt": True},
            "data": {"train": rows, "validation": rows, "max_length": 48, "cache_dir": str(folder / "cache")},
            "method": {"name": "full"},
            "training": {"max_steps": 2, "batch_size": 4, "optimizer": "sgd", "max_grad_norm": None, "lr": 0.5,
                         "warmup_ratio": 0.0, "seed": 1, **extra},
            "output": {"dir": str(folder / "run")},
        })
        weights.append(load_file(run.path / "model" / "model.safetensors"))
    assert run.cost["cpu_threads"]["threads"] >= 1
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, atol=1e-5, rtol=1e-5, msg=name)

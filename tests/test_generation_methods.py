"""Every adapter method on a tiny random Llama as a generation task: AdaLoRA, IA3, prefix, prompt and
p-tuning train, reload with the same validation loss and answer; prompt-learning methods see one
row per example, so packed and padded batches give the same loss and gradients; QLoRA on a machine
without CUDA stops before training and says why."""
from __future__ import annotations

import pytest
import torch
from generation_fixtures import chat_tokenizer, instruction_rows, tiny_llama_dir, write_jsonl

import paretune
from paretune.data.examples import Example
from paretune.errors import ParetuneError
from paretune.methods import get_method
from paretune.methods.base import MethodContext
from paretune.tasks.generation import GenerationOptions, GenerationTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")
VIRTUAL = {"num_virtual_tokens": 4}


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("tiny-llama"))


def _adapted(llama_dir, method: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(llama_dir, use_cache=False)
    options = get_method(method).options(**(VIRTUAL if method != "ia3" else {}))
    torch.manual_seed(0)
    return get_method(method).apply(model, options, MethodContext("generation", 10, 64)).eval()


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_prompt_learning_gives_packed_and_padded_batches_the_same_loss_and_gradients(method, llama_dir):
    model = _adapted(llama_dir, method)
    tokenizer = chat_tokenizer()
    examples = [Example([{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}],
                        r["completion"], i) for i, r in enumerate(instruction_rows(5, 3), 1)]
    results = []
    for packing in (True, False):
        task = GenerationTask(GenerationOptions(packing=packing), [])
        encoded = task.encode(examples, [ex.label for ex in examples], tokenizer, 64)
        batch = task.collate(encoded, list(range(5)), 0)
        model.zero_grad()
        loss = task.loss(model(**{k: batch[k] for k in task.model_inputs}).logits, batch["labels"])
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (packed_loss, packed_grads), (padded_loss, padded_grads) = results
    assert packed_grads and packed_loss == pytest.approx(padded_loss, abs=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("method", ["adalora", "ia3", "prefix", "prompt", "p-tuning"])
def test_method_trains_reloads_and_answers(method, llama_dir, tmp_path):
    validation = write_jsonl(tmp_path / "validation.jsonl", instruction_rows(8, 2))
    config = {
        "model": {"name_or_path": str(llama_dir)},
        "task": {"type": "generation", "generate_rows": 4, "max_new_tokens": 3},
        "data": {"train": str(write_jsonl(tmp_path / "train.jsonl", instruction_rows(32, 1))),
                 "validation": str(validation), "max_length": 48, "cache_dir": str(tmp_path / "cache")},
        "method": {"name": method, **(VIRTUAL if method in ("prefix", "prompt", "p-tuning") else {})},
        "training": {"max_steps": 3, "batch_size": 16, "seed": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(tmp_path / "run")},
    }
    run = paretune.finetune(config)
    assert "exact_match" in run.validation
    predictor = paretune.Predictor.load(run.path)
    assert predictor.evaluate(str(validation))["loss"] == pytest.approx(run.validation["loss"], abs=1e-5)
    assert isinstance(predictor.predict(["review : good film"])[0]["completion"], str)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_qlora_on_a_causal_lm_without_cuda_fails_early_and_says_why(llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(llama_dir)
    with pytest.raises(ParetuneError, match="qlora needs a CUDA GPU"):
        get_method("qlora").apply(model, get_method("qlora").options(), MethodContext("generation", 10, 64))

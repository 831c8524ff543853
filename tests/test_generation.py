"""Generative fine-tuning on a tiny random Llama with a ChatML tokenizer made on the fly: rows of
every shape, loss masking, packing against unpacked training, per-token loss across accumulation,
and train -> eval -> generate through the CLI with the saved chat template."""
from __future__ import annotations

import json

import pytest
import torch
from generation_fixtures import chat_tokenizer, instruction_rows, tiny_gpt2_dir, tiny_llama_dir, write_jsonl
from safetensors.torch import load_file
from typer.testing import CliRunner

import paretune
from paretune.cli import _register, app
from paretune.data.chat_rows import read_generation_examples
from paretune.data.examples import Example
from paretune.errors import DataError
from paretune.tasks.base import IGNORE_INDEX
from paretune.tasks.generation import GenerationOptions, GenerationTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("tiny-llama"))


def _config(model_dir, folder, task=None, training=None, method="full"):
    return {
        "model": {"name_or_path": str(model_dir)},
        "task": {"type": "generation", "generate_rows": 8, "max_new_tokens": 3, **(task or {})},
        "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(48, 1))),
                 "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(8, 2))),
                 "max_length": 48, "cache_dir": str(folder / "cache")},
        "method": {"name": method},
        "training": {"max_steps": 4, "batch_size": 16, "lr": 3e-3, "seed": 1, "warmup_ratio": 0.0,
                     **(training or {})},
        "output": {"dir": str(folder / "run")},
    }


def test_every_row_shape_reads_and_problems_name_row_and_field(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"prompt": "2+2?", "completion": "4"},
        {"instruction": "add", "input": "2 2", "output": "4"},
        {"text": "plain text to continue"},
    ]
    examples = read_generation_examples(write_jsonl(tmp_path / "ok.jsonl", rows))
    assert [ex.label for ex in examples] == ["hello", "yo", "4", "4", None]
    assert examples[3].text[0]["content"] == "add\n\n2 2" and examples[4].text == "plain text to continue"

    bad = [{"prompt": "no answer"}, {"messages": [{"role": "robot", "content": "x"}]}, {"title": "?"},
           {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}]
    with pytest.raises(DataError) as err:
        read_generation_examples(write_jsonl(tmp_path / "bad.jsonl", bad))
    message = str(err.value)
    assert "row 1" in message and "field 'completion'" in message
    assert "row 2" in message and "field 'messages[0]'" in message and "unknown role 'robot'" in message
    assert "row 3" in message and "no generation fields" in message
    assert "row 4" in message and "field 'messages[1]': empty assistant answer" in message  # as an empty completion


def test_only_answers_and_the_end_of_turn_are_trained():
    task, tokenizer = GenerationTask(GenerationOptions(), []), chat_tokenizer()
    example = Example([{"role": "user", "content": "review : good film"},
                       {"role": "assistant", "content": "positive"}], "positive", 1)
    encoded = task.encode([example], ["positive"], tokenizer, 64)
    targets = [tokenizer.convert_ids_to_tokens(int(t)) for t in encoded.token_labels[0] if t != IGNORE_INDEX]
    assert targets == ["positive", "<|im_end|>"]
    everything = GenerationTask(GenerationOptions(train_on_prompt=True), []).encode([example], ["x"], tokenizer, 64)
    assert (everything.token_labels[0] != IGNORE_INDEX).sum() == len(encoded.input_ids[0]) - 1


# SmolLM2's template: a conversation without a system turn gets a default system prompt.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_what_a_template_injects_before_a_first_answer_is_not_trained():
    tokenizer = chat_tokenizer()
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    example = Example([{"role": "assistant", "content": "good film"}, {"role": "user", "content": "why"},
                       {"role": "assistant", "content": "great"}], "great", 1)
    encoded = GenerationTask(GenerationOptions(), []).encode([example], ["great"], tokenizer, 200)
    targets = [tokenizer.convert_ids_to_tokens(int(t)) for t in encoded.token_labels[0] if t != IGNORE_INDEX]
    assert targets == ["good", "film", "<|im_end|>", "great", "<|im_end|>"]


def test_a_long_row_loses_the_start_of_its_prompt_and_keeps_its_answer(caplog):
    task, tokenizer = GenerationTask(GenerationOptions(), []), chat_tokenizer()
    long = Example([{"role": "user", "content": "review : the film was really very good and the cast so fine"},
                    {"role": "assistant", "content": "positive"}], "positive", 1)
    short = Example([{"role": "user", "content": "good"}, {"role": "assistant", "content": "positive"}], "positive", 2)
    encoded = task.encode([long, short], ["positive"] * 2, tokenizer, 10)
    kept = tokenizer.convert_ids_to_tokens(encoded.input_ids[0].tolist())
    assert len(kept) == 10 and kept[-4:] == ["<|im_start|>", "assistant", "positive", "<|im_end|>"]
    assert "review" not in kept  # the start went, the question's end stayed
    targets = [tokenizer.convert_ids_to_tokens(int(t)) for t in encoded.token_labels[0] if t != IGNORE_INDEX]
    assert targets == ["positive", "<|im_end|>"]
    with caplog.at_level("WARNING", logger="paretune"):
        assert task.data_stats(encoded, 10) == {"rows_prompt_cut": 1, "rows_answer_cut": 0}
    assert "1 of 2 training rows are longer than data.max_length=10" in caplog.text
    shown = task.inspect([long, short], tokenizer, 10)[0]
    assert shown.endswith("; 1 prompts cut at their start to data.max_length=10")


def test_generation_defaults_fit_instruction_rows(llama_dir, tmp_path):
    """data.max_length defaults to the task's (1024 for generation, 128 for classification), and the
    automatic token budget of a generative run starts at 1,024 tokens, not 256."""
    from paretune.config import config_from_dict

    config = _config(llama_dir, tmp_path)
    del config["data"]["max_length"]
    assert config_from_dict(config).data.max_length == 1024
    assert config_from_dict({**config, "task": {"type": "classification"}}).data.max_length == 128
    assert config_from_dict({**config, "data": {**config["data"], "max_length": 64}}).data.max_length == 64
    from paretune.data.batching import resolve_batching

    training = config_from_dict({**config, "training": {"epochs": 1}}).training
    assert resolve_batching(training, 20_000, 50, GenerationTask.auto_min_batch_tokens) == (None, 1024)
    assert resolve_batching(training, 20_000, 50) == (None, 256)


def test_inspect_marks_targets_and_stops_on_a_template_that_trains_nothing(llama_dir, tmp_path):
    _register()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(_config(llama_dir, tmp_path)))
    shown = CliRunner().invoke(app, ["inspect", str(config), "--rows", "1"])
    assert shown.exit_code == 0, shown.output
    assert "«positive<|im_end|>" in shown.output and "target tokens" in shown.output

    user_only = tmp_path / "user_only.jinja"  # renders the user's turns and drops the answers
    user_only.write_text("{% for m in messages %}{% if m['role'] == 'user' %}<|im_start|>{{ m['content'] }}"
                         "<|im_end|>{% endif %}{% endfor %}")
    failed = CliRunner().invoke(app, ["inspect", str(config), "--set", f"task.chat_template={user_only}"])
    assert failed.exit_code != 0 and "leaves no token of this conversation to train on" in str(failed.exception)


def _loss_and_grads(model, task, encoded, indices):
    batch = task.collate(encoded, indices, 0)
    model.zero_grad()
    logits = model(**{k: batch[k] for k in task.model_inputs}).logits
    loss = task.loss(logits, batch["labels"])
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_packed_rows_give_the_unpacked_loss_and_gradients(family, llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = llama_dir if family == "llama" else tiny_gpt2_dir(tmp_path / "gpt2")
    model = AutoModelForCausalLM.from_pretrained(folder, use_cache=False)  # in eval mode: no dropout
    tokenizer = chat_tokenizer()
    examples = [Example([{"role": "user", "content": text}, {"role": "assistant", "content": label}], label, i)
                for i, (text, label) in enumerate([(r["prompt"], r["completion"]) for r in instruction_rows(6, 3)], 1)]
    packed = GenerationTask(GenerationOptions(train_on_prompt=True), [])
    padded = GenerationTask(GenerationOptions(train_on_prompt=True, packing=False), [])
    encoded = packed.encode(examples, [ex.label for ex in examples], tokenizer, 64)
    assert len(set(map(len, encoded.input_ids))) > 1  # rows of different lengths: padding matters
    loss_p, grads_p = _loss_and_grads(model, packed, encoded, list(range(6)))
    loss_u, grads_u = _loss_and_grads(model, padded, encoded, list(range(6)))
    assert packed.collate(encoded, list(range(6)), 0)["input_ids"].shape[0] == 1
    assert loss_p.item() == pytest.approx(loss_u.item(), abs=1e-5)
    for name, grad in grads_u.items():
        torch.testing.assert_close(grads_p[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_accumulated_micro_batches_are_one_mean_over_tokens(llama_dir, tmp_path):
    """One SGD step on 4 rows equals two accumulated micro-batches of 2 rows of unequal token counts."""
    weights = []
    for i, (batch, accumulate) in enumerate([(4, 1), (2, 2)]):
        folder = tmp_path / str(i)
        folder.mkdir()
        config = _config(llama_dir, folder, {"generate_rows": 0, "train_on_prompt": True},
                         {"max_steps": 1, "batch_size": batch, "gradient_accumulation_steps": accumulate,
                          "optimizer": "sgd", "max_grad_norm": None, "lr": 0.5})
        config["data"]["train"] = str(write_jsonl(folder / "train.jsonl", instruction_rows(4, 5)))
        run = paretune.finetune(config)
        weights.append(load_file(run.path / "model" / "model.safetensors"))
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, atol=1e-6, rtol=1e-5, msg=name)


def test_train_eval_and_generate_with_the_saved_template(llama_dir, tmp_path):
    run = paretune.finetune(_config(llama_dir, tmp_path, method="lora", training={"max_steps": 3}))
    assert {"perplexity", "token_accuracy", "exact_match", "contains"} <= set(run.validation)
    saved = (run.path / "model" / "chat_template.jinja").read_text()
    assert saved == chat_tokenizer().chat_template  # the template generate and eval will use
    samples = [json.loads(line) for line in (run.path / "samples.jsonl").read_text().splitlines()]
    assert [s["row"] for s in samples] == list(range(1, 9))  # the rows scored, for the run page
    assert set(samples[0]) == {"row", "prompt", "reference", "answer", "match"} and samples[0]["reference"]
    assert sum(s["match"] for s in samples) / 8 == pytest.approx(run.validation["exact_match"])

    _register()
    evaluated = CliRunner().invoke(app, ["eval", str(run.path), "--data", str(tmp_path / "validation.jsonl"),
                                         "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert metrics["exact_match"] == run.validation["exact_match"]
    data = ["eval", str(run.path), "--data", str(tmp_path / "validation.jsonl"), "--json"]
    scored = CliRunner().invoke(app, [*data, "--metric", r"regex:(\w+)"])  # a structured match, after the fact
    assert scored.exit_code == 0, scored.output
    assert 0 <= json.loads(scored.stdout.strip().splitlines()[-1])["structured_match"] <= 1
    refused = CliRunner().invoke(app, [*data, "--metric", "jsn"])
    assert refused.exit_code != 0 and "--metric: unknown match 'jsn'" in str(refused.exception)

    served = paretune.Predictor.load(run.path).predict(["review : good film"])  # what predict and serve answer
    assert list(served[0]) == ["completion"]
    answered = CliRunner().invoke(app, ["generate", str(run.path), "--prompt", "review : good film",
                                        "--max-new-tokens", "3"])
    assert answered.exit_code == 0, answered.output
    assert answered.stdout.strip() == served[0]["completion"].strip()  # the text is the user's turn in both
    from paretune.cost.inference import bench_inference

    served_cost = bench_inference(run.path, repeats=2, warmup=0, batches=1, batch_size=4, progress=False)
    assert served_cost["generation"]["tokens_per_s_batched"] > 0 and served_cost["generation"]["time_to_first_token_ms"] > 0
    output = tmp_path / "answers.jsonl"
    done = CliRunner().invoke(app, ["generate", str(run.path), "--input", str(tmp_path / "validation.jsonl"),
                                    "--output", str(output), "--max-new-tokens", "3", "--temperature", "0.8"])
    assert done.exit_code == 0, done.output
    assert [json.loads(line)["row"] for line in output.read_text().splitlines()] == list(range(1, 9))
    ranked = CliRunner().invoke(app, ["frontier", str(tmp_path)])  # ranked by its answers, not perplexity
    assert ranked.exit_code == 0, ranked.output
    assert "best quality**: run: exact_match" in ranked.stdout


def test_two_processes_weighted_by_target_tokens_give_the_one_process_loss_and_gradients(llama_dir):
    """What the loop does under --nproc 2, without launching: each rank's mean loss over its packed
    rows, times its share of the batch's target tokens (BatchPlan.share) and the world size, averaged
    over ranks (the gradient all-reduce), equals one process's loss over the whole batch."""
    from transformers import AutoModelForCausalLM

    from paretune.data.batching import BatchPlan

    model = AutoModelForCausalLM.from_pretrained(llama_dir, use_cache=False)
    task, tokenizer = GenerationTask(GenerationOptions(train_on_prompt=True), []), chat_tokenizer()
    rows = instruction_rows(5, 4)
    examples = [Example([{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}],
                        r["completion"], i) for i, r in enumerate(rows, 1)]
    encoded = task.encode(examples, [ex.label for ex in examples], tokenizer, 64)
    loss_one, grads_one = _loss_and_grads(model, task, encoded, list(range(5)))
    ranks = [BatchPlan(encoded.lengths(), batch_size=5, shuffle=False, num_replicas=2, rank=r,
                       loss_units=task.loss_units(encoded), packed=True) for r in (0, 1)]
    model.zero_grad()
    total = 0.0
    for plan in ranks:
        batch = task.collate(encoded, list(plan)[0], 0)
        loss = task.loss(model(**{k: batch[k] for k in task.model_inputs}).logits, batch["labels"])
        part = loss * plan.share(0).loss_weight * 2 / 2  # weight x world size, then the all-reduce mean
        part.backward()
        total += float(part.detach())
    assert total == pytest.approx(loss_one.item(), abs=1e-5)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads_one[name], atol=1e-5, rtol=1e-4, msg=name)

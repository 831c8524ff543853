"""GGUF export (`paretune export RUN --format gguf`): a tiny generative LoRA run over a random Llama
with a byte-level BPE tokenizer is written as one .gguf and read back with transformers' GGUF
loader: the same tokens, the same greedy answers at f16, close at q8_0; Qwen2 and Mistral map too;
what cannot be exported is refused before any file is written; an exported adapter names its base
portably (issue 28)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from bpe_fixtures import byte_bpe_tokenizer, tiny_bpe_llama_dir
from generation_fixtures import instruction_rows, write_jsonl
from typer.testing import CliRunner

import paretune
from paretune.cli import _register, app
from paretune.errors import ParetuneError
from paretune.export import export_gguf
from paretune.stored.gguf_export import write_gguf
from paretune.stored.ollama_modelfile import modelfile

pytest.importorskip("gguf")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["good film", "review : a dull plot , bad acting .", '{"name": "Ada", "age": 36}',
         "  two  spaces\n\nand 12345 digits!", "ünïcödé ✓ 🙂", "<|im_start|>user\nhi<|im_end|>\n"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-run")
    base = tiny_bpe_llama_dir(folder / "tiny-bpe-llama")
    config = {
        "model": {"name_or_path": str(base)},
        "task": {"type": "generation", "generate_rows": 4, "max_new_tokens": 3},
        "data": {"train": str(write_jsonl(folder / "train.jsonl", instruction_rows(24, 1))),
                 "validation": str(write_jsonl(folder / "validation.jsonl", instruction_rows(8, 2))),
                 "max_length": 48, "cache_dir": str(folder / "cache")},
        "method": {"name": "lora"},
        "training": {"max_steps": 2, "batch_size": 12, "lr": 3e-3, "seed": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "run")},
    }
    return paretune.finetune(config).path


def read_back(gguf_file):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name).eval()
    return model, AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)


def run_model(run_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paretune.stored import load_model

    return load_model(run_dir / "model", AutoModelForCausalLM).eval(), AutoTokenizer.from_pretrained(run_dir / "model")


def prompts(tokenizer, run_dir) -> list[list[int]]:
    rows = [json.loads(line) for line in (run_dir.parent / "validation.jsonl").read_text().splitlines()]
    return [tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], add_generation_prompt=True,
                                          return_dict=True)["input_ids"] for row in rows]


def greedy(model, ids: list[int]) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, pad_token_id=0)
    return out[0, len(ids):].tolist()


def test_f16_reads_back_with_the_same_tokens_and_greedy_answers(lora_run):
    _register()
    done = CliRunner().invoke(app, ["export", str(lora_run), "--format", "gguf", "--quant", "f16"])
    assert done.exit_code == 0, done.output
    folder = lora_run / "export" / "gguf-f16"
    gguf_file = folder / f"{lora_run.name}-f16.gguf"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["Modelfile", gguf_file.name])
    exported, exported_tokenizer = read_back(gguf_file)
    model, tokenizer = run_model(lora_run)
    rows = instruction_rows(60, 3)
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]},
                                            {"role": "assistant", "content": r["completion"]}], tokenize=False)
             for r in rows]
    for text in TEXTS + chats + [c.upper().replace(" ", "  ") + " 1,234.5!" for c in chats]:
        assert exported_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"], text
    assert exported_tokenizer.chat_template == (lora_run / "model" / "chat_template.jinja").read_text()
    for ids in prompts(tokenizer, lora_run):
        assert greedy(exported, ids) == greedy(model, ids)
    written = (folder / "Modelfile").read_text()
    assert written.startswith(f"FROM ./{gguf_file.name}\n") and 'PARAMETER stop "<|im_end|>"' in written
    assert '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n' in written
    again = CliRunner().invoke(app, ["export", str(lora_run), "--format", "gguf", "--quant", "f16"])
    assert again.exit_code != 0 and "already exists and is not empty" in str(again.exception)


def test_q8_0_is_close(lora_run, tmp_path):
    gguf_file = export_gguf(lora_run, "q8_0", tmp_path / "q8")
    exported, _ = read_back(gguf_file)
    model, tokenizer = run_model(lora_run)
    f16_bytes = 2 * sum(p.numel() for p in model.parameters())
    assert gguf_file.stat().st_size < 0.6 * f16_bytes + 32_768  # 8.5 bits a weight, plus the vocabulary
    ids = torch.tensor([tokenizer(" ".join(TEXTS))["input_ids"]])
    with torch.no_grad():
        ours, theirs = model(ids).logits[0], exported(ids).logits[0]
    assert (ours - theirs).abs().max() < 0.05 * ours.abs().max()
    assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() >= 0.9


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_qwen2_and_mistral_map_onto_llama_cpp_names(family, tmp_path):
    from transformers import AutoModelForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = byte_bpe_tokenizer()
    sizes = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    if family == "qwen2":  # biased Q/K/V, tied embeddings, no rotary permutation
        model = Qwen2ForCausalLM(Qwen2Config(**sizes, tie_word_embeddings=True)).eval()
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                torch.nn.init.normal_(param, std=0.5)
    else:
        model = MistralForCausalLM(MistralConfig(**sizes, sliding_window=None)).eval()
    gguf_file = write_gguf(model, tokenizer, tmp_path / "m.gguf", "f32", family)
    exported = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=gguf_file.name).eval()
    ids = torch.tensor([tokenizer("good film , bad plot")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, model(ids).logits)


@pytest.mark.parametrize("edit, message", [
    ({"model_type": "falcon", "architectures": ["FalconForCausalLM"]}, "not architecture 'falcon'"),
    ({"architectures": ["LlamaForSequenceClassification"]}, "LlamaForSequenceClassification head"),
])
def test_what_cannot_be_mapped_is_refused_before_any_file(lora_run, tmp_path, edit, message):
    copy = tmp_path / "run"
    shutil.copytree(lora_run, copy, ignore=shutil.ignore_patterns("export"))
    config_file = copy / "model" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **edit}))
    with pytest.raises(ParetuneError, match=message):
        export_gguf(copy, "f16")
    with pytest.raises(ParetuneError, match="--quant: 'q4_k' is not one the gguf package can write"):
        export_gguf(copy, "q4_k")
    assert not (copy / "export").exists()


def test_an_exported_adapter_names_its_base_portably(lora_run, tmp_path):
    folder = paretune.export.export_run(lora_run, merge=False, output=tmp_path / "adapter")
    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == "path/to/tiny-bpe-llama"  # was this machine's absolute path


def test_modelfile_keeps_a_default_system_prompt_and_refuses_nothing_it_cannot_translate():
    tokenizer = byte_bpe_tokenizer()
    tokenizer.chat_template = (  # SmolLM2's shape: a default system turn when the conversation has none
        "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}{{ '<|im_start|>system\nBe kind.<|im_end|>\n' }}"
        "{% endif %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    text = modelfile(tokenizer, "m.gguf")
    assert '{{ if and (eq $i 0) (ne .Role "system") }}<|im_start|>system\nBe kind.<|im_end|>\n{{ end }}' in text
    tokenizer.chat_template = "{{ messages | map(attribute='content') | join('|') }}"
    assert "TEMPLATE" not in modelfile(tokenizer, "m.gguf").split("#")[0]

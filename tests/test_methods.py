"""Fine-tuning methods: `freeze` trains exactly the parameters it promises, and the registry is strict."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import sentiment_rows, write_csv
from safetensors.torch import load_file

import paretune
from paretune.config import config_from_dict
from paretune.errors import ConfigError
from paretune.methods import METHODS, get_method

N_LAYERS = 2  # of the tiny model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def strip_base(name: str) -> str:
    """Parameter names without the base-model prefix, so body and head model names compare."""
    return name.removeprefix("bert.")


def should_train(name: str, trainable_layers: int) -> bool:
    """Which parameters `freeze` leaves trainable: the top blocks, the pooler and the head."""
    name = strip_base(name)
    if name.startswith("embeddings."):
        return False
    if name.startswith("encoder.layer."):
        return int(name.split(".")[2]) >= N_LAYERS - trainable_layers
    return True


@pytest.fixture(scope="module", params=[0, 1], ids=["head-only", "top-layer"])
def freeze_run(request, tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"freeze-{request.param}")
    config = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {
            "train": str(write_csv(folder / "train.csv", sentiment_rows(48, seed=1))),
            "validation": str(write_csv(folder / "validation.csv", sentiment_rows(16, seed=2))),
            "max_length": 32,
            "cache_dir": str(folder / "cache"),
        },
        "method": {"name": "freeze", "trainable_layers": request.param},
        "training": {"max_steps": 5, "batch_size": 16, "lr": 1e-3, "warmup_ratio": 0.0, "seed": 3,
                     "save_every": 10_000},
        "output": {"dir": str(folder / "run")},
    }
    return request.param, paretune.finetune(config)


def test_freeze_changes_only_trainable_parameters(freeze_run, tiny_model_dir):
    trainable_layers, run = freeze_run
    pretrained = {strip_base(k): v for k, v in load_file(tiny_model_dir / "model.safetensors").items()}
    trained = load_file(run.path / "model" / "model.safetensors")
    assert any(k.startswith("classifier.") for k in trained)

    compared = 0
    for name, weights in trained.items():
        if strip_base(name) not in pretrained:
            continue  # the freshly initialised head has no pretrained value to compare with
        before = pretrained[strip_base(name)]
        if should_train(name, trainable_layers):
            assert not torch.equal(weights, before), f"{name} should have trained"
        else:
            assert torch.equal(weights, before), f"{name} should be frozen, bit for bit"
        compared += 1
    assert compared == len(pretrained)


def test_freeze_reports_trainable_parameter_counts(freeze_run):
    from transformers import AutoModelForSequenceClassification

    trainable_layers, run = freeze_run
    model = AutoModelForSequenceClassification.from_pretrained(run.path / "model")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for n, p in model.named_parameters() if should_train(n, trainable_layers))

    on_disk = json.loads((run.path / "metrics.json").read_text())
    for metrics in (run.metrics, on_disk):
        assert metrics["total_params"] == total
        assert metrics["trainable_params"] == trainable
        assert metrics["trainable_percent"] == pytest.approx(100 * trainable / total, abs=1e-4)
    assert 0 < trainable < total


def freeze_config(**options) -> dict:
    return {"data": {"train": "train.csv"}, "method": {"name": "freeze", **options}}


def test_freeze_layers_and_trainable_layers_together_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(freeze_config(trainable_layers=1, freeze_layers=1), "run.yaml")
    message = str(caught.value)
    assert "run.yaml" in message
    assert "method.trainable_layers" in message and "method.freeze_layers" in message


def test_either_freeze_option_alone_is_fine():
    assert config_from_dict(freeze_config(freeze_layers=1)).method.freeze_layers == 1
    assert config_from_dict(freeze_config()).method.trainable_layers == 2  # the documented default


@pytest.mark.parametrize("option", ["trainable_layers", "freeze_layers"])
def test_more_layers_than_the_model_has_is_a_config_error(tiny_model_dir, option):
    from transformers import AutoModelForSequenceClassification

    from paretune.methods.base import MethodContext

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    method = get_method("freeze")
    with pytest.raises(ConfigError) as caught:
        method.apply(model, method.options(**{option: N_LAYERS + 1}), MethodContext("classification", 10))
    assert f"method.{option}={N_LAYERS + 1}" in str(caught.value)
    assert f"{N_LAYERS} transformer blocks" in str(caught.value)


def test_registry_rejects_unknown_method_listing_the_known_ones():
    with pytest.raises(KeyError) as caught:
        get_method("lora-typo")
    message = str(caught.value)
    assert "lora-typo" in message
    assert all(name in message for name in METHODS)


def test_config_rejects_unknown_method_listing_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"data": {"train": "train.csv"}, "method": {"name": "lora-typo"}}, "run.yaml")
    message = str(caught.value)
    assert "method" in message and "lora-typo" in message
    assert all(f"'{name}'" in message for name in METHODS)


def test_peft_wrapping_does_not_repeat_transformers_checkpointing_deprecation(tiny_model_dir):
    """peft reads a deprecated transformers property; the FutureWarning is silenced there only."""
    import warnings

    import peft
    from transformers import AutoModelForSequenceClassification

    from paretune.methods.targets import wrap_with_peft

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrap_with_peft(model, lora)
        warnings.warn("is_gradient_checkpointing stays visible elsewhere", FutureWarning)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert messages == ["is_gradient_checkpointing stays visible elsewhere"]


def _full(model, **options):
    from paretune.methods.base import MethodContext
    from paretune.methods.full import FullOptions, apply

    return apply(model, FullOptions(**options), MethodContext(task_type="classification", total_steps=1))


def test_full_trains_every_weight_by_default_and_auto_freezes_a_large_untied_token_table(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=32_000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)  # a real-sized vocabulary: 1.02M weights
    model = _full(BertForSequenceClassification(config))
    assert all(p.requires_grad for p in model.parameters())
    model = _full(model, freeze_token_embeddings="auto")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"bert.embeddings.word_embeddings.weight"}  # positions, types and the norm train
    # The tiny test model's table (200 x 32) costs nothing to update, and it is random: it trains.
    tiny = _full(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2),
                 freeze_token_embeddings="auto")
    assert all(p.requires_grad for p in tiny.parameters())


def test_full_keeps_a_token_table_tied_to_the_output_layer_trainable():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=70_000, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    model = _full(LlamaForCausalLM(config), freeze_token_embeddings="auto")
    assert all(p.requires_grad for p in model.parameters())  # freezing it would freeze the LM head
    model = _full(model, freeze_token_embeddings=True)  # asked for: frozen, head with it
    assert not model.get_input_embeddings().weight.requires_grad
    untied = LlamaForCausalLM(LlamaConfig(**{**config.to_dict(), "tie_word_embeddings": False}))
    model = _full(untied, freeze_token_embeddings="auto")
    assert not model.get_input_embeddings().weight.requires_grad and model.lm_head.weight.requires_grad

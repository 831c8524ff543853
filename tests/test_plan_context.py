"""The plan's largest trainable context (cost/context.py): counted on the model, solved per memory."""
from __future__ import annotations

import pytest
import torch

from paretune.cost.context import MIB, ContextModel, count_context


def _model(**changes) -> ContextModel:
    base = dict(bytes_per_token=40_000.0, bytes_per_token_sq=0.0, layers=4, hidden=64, checkpointing=False,
                vocab=32_000, labelled_share=1.0, chunked_loss=False, rows=1, max_positions=None)
    return ContextModel(**{**base, **changes})


def test_more_memory_never_means_a_shorter_context():
    model = _model(bytes_per_token_sq=8.0)
    found = [model.largest(memory, fixed_mib=500)["tokens"] for memory in (400, 600, 1_000, 4_000, 16_000)]
    assert found[0] == 0 and all(a < b for a, b in zip(found, found[1:]))
    # the figure is the longest that fits: one token more does not
    best = model.largest(4_000, fixed_mib=500)["tokens"]
    assert model.peak_mib(best, 500) <= 4_000 < model.peak_mib(best + 1, 500)


def test_checkpointing_and_the_chunked_loss_make_room_for_longer_contexts():
    plain = _model().largest(8_000, fixed_mib=500)["tokens"]
    assert _model(checkpointing=True).largest(8_000, fixed_mib=500)["tokens"] > plain
    assert _model(chunked_loss=True).largest(8_000, fixed_mib=500)["tokens"] > plain
    # auto chunks only past engine/chunked_loss.py's threshold, so it fits at least as much as plain
    assert _model(chunked_loss="auto").largest(8_000, fixed_mib=500)["tokens"] > plain
    # a task without an LM head over the vocabulary has no logits to hold
    assert _model(vocab=0).largest(8_000, fixed_mib=500)["tokens"] > plain


def test_rows_per_batch_and_the_position_table_bound_it():
    one = _model().largest(8_000, fixed_mib=500)
    four = _model(rows=4).largest(8_000, fixed_mib=500)
    assert four["rows"] == 4 and four["tokens"] < one["tokens"]
    capped = _model(max_positions=512).largest(64_000, fixed_mib=500)
    assert capped == {**capped, "tokens": 512, "limit": "model positions"}
    assert ContextModel(**capped["model"]) == _model(max_positions=512)  # the row carries its model


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(attention: str):
        config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                             attn_implementation=attention)
        torch.manual_seed(0)
        return LlamaForCausalLM(config)
    return build


def _count(model, **changes) -> ContextModel:
    options = dict(checkpointing=False, vocab=0, labelled_share=0.0, chunked_loss=False, rows=1)
    return count_context(model, torch.device("cpu"), **{**options, **changes})


def test_counting_finds_what_autograd_keeps(tiny_llama, one_torch_thread):
    eager = _count(tiny_llama("eager"))
    # every layer keeps a few hidden-size vectors per token (fp32): far more than one, far less than 200
    per_token_values = eager.bytes_per_token / 4
    assert 2 * 32 * 2 < per_token_values < 200 * 32 * 2
    assert eager.bytes_per_token_sq > 0  # eager attention keeps its length x length scores
    assert eager.layers == 2 and eager.hidden == 32 and eager.max_positions == 256
    sdpa = _count(tiny_llama("sdpa"))
    assert sdpa.bytes_per_token_sq < eager.bytes_per_token_sq  # SDPA keeps no score matrix


def test_counting_ignores_checkpointing_and_leaves_it_on(tiny_llama, one_torch_thread):
    from paretune.engine.activation_checkpointing import enable_gradient_checkpointing

    model = tiny_llama("sdpa")
    plain = _count(model)
    enable_gradient_checkpointing(model)  # as training.gradient_checkpointing does
    counted = _count(model, checkpointing=True)
    assert counted.bytes_per_token == pytest.approx(plain.bytes_per_token, rel=0.02)
    assert model.model.gradient_checkpointing is True and model.training
    # the formula then keeps one input per layer plus one layer recomputed: less than all layers
    assert counted.activation_bytes(1000) < plain.activation_bytes(1000)
    assert counted.largest(64, fixed_mib=0)["tokens"] >= plain.largest(64, fixed_mib=0)["tokens"]
    assert plain.peak_mib(100, 10) == pytest.approx(10 + plain.activation_bytes(100) / MIB)


def test_gradients_and_activations_peak_apart():
    model = _model(vocab=0)
    # short rows: the optimizer step (gradients and AdamW's temporary as large) sets the peak
    assert model.peak_mib(16, fixed_mib=500, gradients_mib=400) == 500 + 2 * 400
    # long rows: activations, which backward frees as the gradients fill in
    long = 100_000
    assert model.peak_mib(long, fixed_mib=500, gradients_mib=400) == pytest.approx(
        500 + model.activation_bytes(long) / MIB)
    assert model.largest(1_000, fixed_mib=500, gradients_mib=400)["tokens"] == 0

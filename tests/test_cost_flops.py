"""Training-FLOP estimate: hand counts on a tiny BERT, and agreement with torch's FLOP counter."""
from __future__ import annotations

import peft
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification

from paretune.cost.flops import parameter_flops, training_flops

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Hand count for hidden 32, intermediate 64, 2 layers, 2 labels (weights + biases, no embeddings).
QKV = 32 * 32 + 32  # one of query / key / value, also the attention output dense and the pooler
LAYER = 3 * QKV + QKV + 64 + (32 * 64 + 64) + (64 * 32 + 32) + 64  # ... + LayerNorm, FFN, LayerNorm
EMB_NORM, POOLER, HEAD = 64, QKV, 32 * 2 + 2
EMBEDDINGS = 100 * 32 + 64 * 32 + 2 * 32  # word, position, token type tables


def tiny_bert(hidden=32, intermediate=64, layers=2) -> torch.nn.Module:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=intermediate, max_position_embeddings=64,
                        num_labels=2)
    return BertForSequenceClassification(config)


def freeze_bottom(model, blocks: int):
    for p in [*model.bert.embeddings.parameters(), *model.bert.encoder.layer[:blocks].parameters()]:
        p.requires_grad_(False)
    return model


def test_full_fine_tuning_is_six_per_weight_and_token():
    split = parameter_flops(tiny_bert())
    assert LAYER == 8544
    assert split["trainable_params"] == EMB_NORM + 2 * LAYER + POOLER + HEAD
    assert split["frozen_params"] == 0
    assert split["embedding_params"] == EMBEDDINGS  # lookups: outside the matmul count
    assert split["flops_per_token"] == 6 * split["trainable_params"]
    assert training_flops(tiny_bert(), padded_tokens=1000, samples=50)["train"] == 6 * 18274 * 1000


def test_frozen_bottom_layers_run_forward_only():
    split = parameter_flops(freeze_bottom(tiny_bert(), 1))
    frozen_below = EMB_NORM + LAYER  # nothing trains under them: forward only, 2
    first_trainable = QKV  # layer 1's query: weight gradient but no input gradient, 4
    rest = LAYER - QKV + POOLER + HEAD  # 6
    assert split["frozen_params"] == frozen_below
    assert split["trainable_params"] == LAYER + POOLER + HEAD
    assert split["flops_per_token"] == 2 * frozen_below + 4 * first_trainable + 6 * rest


def test_lora_charges_frozen_weights_above_the_adapter_four():
    model = peft.get_peft_model(tiny_bert(), peft.LoraConfig(r=4, target_modules=["query", "value"],
                                                             modules_to_save=["classifier"]))
    lora = 4 * 32 + 32 * 4  # lora_A and lora_B of one target
    split = parameter_flops(model)
    assert split["trainable_params"] == 4 * lora + HEAD
    assert split["frozen_params"] == EMB_NORM + 2 * LAYER + POOLER  # peft's idle head copy left out
    below_first_adapter = 2 * (EMB_NORM + QKV)  # embeddings' norm and layer 0's frozen query
    first_adapter = 4 * (4 * 32) + 6 * (32 * 4)  # lora_A has no trainable input below; lora_B does
    others = 6 * (3 * lora + HEAD) + 4 * (2 * LAYER - QKV + POOLER)
    assert split["flops_per_token"] == below_first_adapter + first_adapter + others


def test_prompt_tuning_adds_its_virtual_tokens():
    config = peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=8)
    model = peft.get_peft_model(tiny_bert(), config)
    flops = training_flops(model, padded_tokens=400, samples=20)
    assert flops["tokens"] == 400 + 20 * 8
    assert flops["trainable_params"] == HEAD  # the prompt is an embedding table, counted apart
    # The prompt sits below everything: every frozen weight passes the gradient down, 4.
    assert flops["flops_per_token"] == 4 * (EMB_NORM + 2 * LAYER + POOLER) + 6 * HEAD


def counted_matmul_flops(model, seq: int = 32, batch: int = 2) -> tuple[int, int]:
    """torch's count of one forward+backward, without attention scores (which the rule leaves out)."""
    ids = torch.randint(5, 100, (batch, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(batch).long()).loss.backward()
    by_op = counter.get_flop_counts()["Global"]
    attention = sum(n for op, n in by_op.items() if "attention" in str(op) or "bmm" in str(op))
    return counter.get_total_flops() - attention, batch * seq


@pytest.mark.parametrize("setup", ["full", "freeze", "lora"])
def test_estimate_tracks_what_autograd_computes(setup):
    model = tiny_bert(hidden=256, intermediate=1024, layers=4)
    if setup == "freeze":
        freeze_bottom(model, 2)
    elif setup == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules=["query", "value"]))
    counted, tokens = counted_matmul_flops(model)
    estimate = training_flops(model, padded_tokens=tokens, samples=2)["train"]
    # Over by the pooler/head charged on every token and, for freeze/LoRA, the first trainable
    # block's parallel branches (docs/cost.md): a few percent, never under.
    assert counted <= estimate <= 1.12 * counted

"""Each preference loss, and its gradients, equal TRL's on the same batch of a tiny random Llama.

TRL is the reference: DPOTrainer's and KTOTrainer's own `_compute_loss` (on a stand-in trainer
holding only what those methods read, with TRL's fused LM head patched onto the model), and the
ORPO and CPO (SimPO) trainers' own loss and log-prob functions. Both sides run in float64 on the
same token ids, so the figures agree to far below 1e-5. The policy is the reference model with
its weights nudged, so log-ratios are not zero. Data errors (file, row, field) are checked too.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from generation_fixtures import tiny_llama_dir
from paretune.data.encoded import Encoded
from paretune.errors import DataError
from paretune.tasks import task_class, task_options
from paretune.tasks.base import IGNORE_INDEX

trl = pytest.importorskip("trl")

PAIRS = [
    {"prompt": "review the film was good", "chosen": "positive", "rejected": "negative"},
    {"prompt": [{"role": "user", "content": "the plot was dull"}],
     "chosen": [{"role": "assistant", "content": "negative"}], "rejected": "positive good film"},
    {"chosen": [{"role": "user", "content": "sentiment the acting was great"}, {"role": "assistant", "content": "positive"}],
     "rejected": [{"role": "user", "content": "sentiment the acting was great"}, {"role": "assistant", "content": "dull"}]},
    {"messages": [{"role": "system", "content": "review"}, {"role": "user", "content": "a bad film"}],
     "chosen": "negative", "rejected": "positive positive"},
]
ANSWERS = [
    {"prompt": "review the film was good", "completion": "positive", "label": True},
    {"prompt": "the plot was dull", "completion": "positive good", "label": False},
    {"prompt": "a great film", "completion": "positive", "label": True},
    {"prompt": "the acting was bad", "completion": "good", "label": False},
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tiny_llama_dir(tmp_path_factory.mktemp("llama"))
    return folder, AutoTokenizer.from_pretrained(folder)


def _load(folder: Path):
    from transformers import AutoModelForCausalLM

    # No KV cache, as paretune loads generative models for training: packed rows need none.
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, use_cache=False)


def _task_and_data(tmp_path: Path, tokenizer, loss: dict, rows: list[dict]):
    options = task_options({"type": "preference", "loss": loss})
    cls = task_class("preference")
    examples = cls.read_examples(_write(tmp_path / "rows.jsonl", rows), options)
    task = cls(options, [])
    return task, task.encode(examples, task.parse(examples, "rows", "label"), tokenizer, 64)


def _policy_with_reference(folder: Path, task, encoded: Encoded):
    """The model scores the reference, then its weights move a little: the policy."""
    model = _load(folder)
    task.score_reference(model, {"train": encoded}, "cpu", None)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _ours(model, task, encoded: Encoded) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    batch = task.collate(encoded, list(range(len(encoded))), 0)
    loss = task.loss(model(**{k: batch[k] for k in task.model_inputs}).logits, batch["labels"])
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _trl_rows(encoded: Encoded, which: int) -> dict[str, torch.Tensor]:
    """Sequence `which` (0 chosen, 1 rejected) of every example as TRL lays rows out: right-padded,
    `completion_mask` 1 on answer tokens, per-sequence reference sums."""
    ids, masks, refs = [], [], []
    for i in range(len(encoded)):
        cut = int(encoded.first_length[i][0])
        part = slice(0, cut) if which == 0 else slice(cut, None)
        labels, row = encoded.token_labels[i][part], torch.as_tensor(encoded.input_ids[i][part], dtype=torch.long)
        trained = torch.as_tensor(labels != IGNORE_INDEX)
        ids.append(row)
        masks.append(torch.cat([torch.zeros(1, dtype=torch.long), trained[:-1].long()]))
        refs.append(float(encoded.reference_logps[i][part][trained.numpy()].sum()))
    width = max(len(r) for r in ids)
    pad = lambda rows: torch.stack([torch.nn.functional.pad(r, (0, width - len(r))) for r in rows])  # noqa: E731
    return {"input_ids": pad(ids), "attention_mask": pad([torch.ones_like(r) for r in ids]),
            "completion_mask": pad(masks), "ref": torch.tensor(refs, dtype=torch.float64)}


def _stand_in(model, **attrs) -> SimpleNamespace:
    from accelerate import Accelerator

    return SimpleNamespace(model=model, accelerator=Accelerator(cpu=True), aux_loss_enabled=False,
                           _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
                           _total_train_tokens=0, _tp_size=1, ref_model=None, precompute_ref_logps=True, **attrs)


def _trl_grads(model, loss: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_same(ours, theirs) -> None:
    assert float(ours[0]) == pytest.approx(float(theirs[0]), abs=1e-5)
    for mine, trls in zip(ours[1], theirs[1]):
        torch.testing.assert_close(mine, trls, atol=1e-5, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in ours[1])


def _trl_dpo(model, encoded: Encoded, loss_type: str, beta: float) -> torch.Tensor:
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    chosen, rejected = _trl_rows(encoded, 0), _trl_rows(encoded, 1)
    width = max(chosen["input_ids"].shape[1], rejected["input_ids"].shape[1])
    widen = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    inputs = {k: torch.cat([widen(chosen[k]), widen(rejected[k])]) for k in ("input_ids", "attention_mask",
                                                                            "completion_mask")}
    inputs.update(ref_chosen_logps=chosen["ref"], ref_rejected_logps=rejected["ref"])
    trainer = _stand_in(model, beta=beta, loss_types=[loss_type], loss_weights=[1.0], ld_alpha=None,
                        f_divergence_type="reverse_kl", use_weighting=False, label_smoothing=0.0)
    return DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_equals_trl_dpo_trainer(llama, tmp_path, loss_type):
    folder, tokenizer = llama
    task, encoded = _task_and_data(tmp_path, tokenizer, {"name": "dpo", "beta": 0.5, "loss_type": loss_type}, PAIRS)
    model = _policy_with_reference(folder, task, encoded)
    ours = _ours(model, task, encoded)
    _assert_same(ours, _trl_grads(model, _trl_dpo(model, encoded, loss_type, 0.5)))


def test_reference_log_probs_equal_trl_on_the_starting_model(llama, tmp_path):
    from trl.trainer.utils import add_fused_lm_head

    folder, tokenizer = llama
    task, encoded = _task_and_data(tmp_path, tokenizer, {"name": "dpo"}, PAIRS)
    model = _load(folder)
    task.score_reference(model, {"train": encoded}, "cpu", None)
    add_fused_lm_head(model)
    for which in (0, 1):
        rows = _trl_rows(encoded, which)
        labels = rows["input_ids"].masked_fill(rows["completion_mask"] == 0, -100)
        with torch.no_grad():
            out = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"], labels=labels,
                        fused_lm_head=True)
        torch.testing.assert_close(out.log_probs.sum(1).double(), rows["ref"], atol=1e-5, rtol=1e-6)


def _padded_logps(model, encoded: Encoded, average: bool):
    """TRL's own batch log-probs (ORPO/CPO `get_batch_logps`) from a padded forward, and the
    chosen rows' logits and labels for ORPO's SFT term."""
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    out = []
    for which in (0, 1):
        rows = _trl_rows(encoded, which)
        labels = rows["input_ids"].masked_fill(rows["completion_mask"] == 0, -100)
        logits = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"]).logits
        out.append((ORPOTrainer.get_batch_logps(logits, labels, average_log_prob=average), logits, labels))
    return out


def test_orpo_equals_trl_orpo(llama, tmp_path):
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    folder, tokenizer = llama
    task, encoded = _task_and_data(tmp_path, tokenizer, {"name": "orpo", "odds_ratio_weight": 0.3}, PAIRS)
    model = _policy_with_reference(folder, task, encoded)
    ours = _ours(model, task, encoded)
    (chosen, logits, labels), (rejected, _, _) = _padded_logps(model, encoded, average=True)
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
    losses = ORPOTrainer.odds_ratio_loss(_stand_in(model, beta=0.3), chosen, rejected)[0]
    _assert_same(ours, _trl_grads(model, nll - losses.mean()))


def test_simpo_equals_trl_cpo_with_simpo_loss(llama, tmp_path):
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    folder, tokenizer = llama
    options = {"name": "simpo", "beta": 2.0, "gamma": 0.7, "label_smoothing": 0.1}
    task, encoded = _task_and_data(tmp_path, tokenizer, options, PAIRS)
    model = _policy_with_reference(folder, task, encoded)
    ours = _ours(model, task, encoded)
    (chosen, _, _), (rejected, _, _) = _padded_logps(model, encoded, average=True)
    trainer = _stand_in(model, beta=2.0, simpo_gamma=0.7, label_smoothing=0.1, alpha=0.0, loss_type="simpo")
    _assert_same(ours, _trl_grads(model, CPOTrainer.cpo_loss(trainer, chosen, rejected)[0].mean()))


def test_kto_equals_trl_kto_trainer(llama, tmp_path):
    from trl.trainer.kto_trainer import KTOTrainer
    from trl.trainer.utils import add_fused_lm_head

    folder, tokenizer = llama
    options = {"name": "kto", "beta": 0.3, "desirable_weight": 1.0, "undesirable_weight": 1.5}
    task, encoded = _task_and_data(tmp_path, tokenizer, options, ANSWERS)
    model = _policy_with_reference(folder, task, encoded)
    ours = _ours(model, task, encoded)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    own, mismatched = _trl_rows(encoded, 0), _trl_rows(encoded, 1)
    inputs = {k: own[k] for k in ("input_ids", "attention_mask", "completion_mask")}
    inputs.update({f"KL_{k}": mismatched[k] for k in ("input_ids", "attention_mask", "completion_mask")})
    inputs.update(label=torch.tensor([r["label"] for r in ANSWERS]), ref_logps=own["ref"], ref_KL_logps=mismatched["ref"])
    trainer = _stand_in(model, beta=0.3, desirable_weight=1.0, undesirable_weight=1.5, loss_type="kto",
                        calculate_KL=True)
    trainer._compute_kl_logps = lambda m, batch: KTOTrainer._compute_kl_logps(trainer, m, batch)
    theirs = KTOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    _assert_same(ours, _trl_grads(model, theirs))


def test_rewards_metrics_follow_trl_names(llama, tmp_path):
    folder, tokenizer = llama
    task, encoded = _task_and_data(tmp_path, tokenizer, {"name": "dpo"}, PAIRS)
    model = _policy_with_reference(folder, task, encoded)
    batch = task.collate(encoded, list(range(len(encoded))), 0)
    with torch.no_grad():
        logits = model(**{k: batch[k] for k in task.model_inputs}).logits
    metrics = task.metrics(task.outputs(logits, batch), None)
    assert set(metrics) == set(task.metric_names)
    assert metrics["rewards/margins"] == pytest.approx(metrics["rewards/chosen"] - metrics["rewards/rejected"])
    assert 0 <= metrics["rewards/accuracies"] <= 1 and metrics["logps/chosen"] < 0


def test_kto_metrics_split_completions_by_label_and_missing_references_give_none(llama, tmp_path):
    folder, tokenizer = llama
    task, encoded = _task_and_data(tmp_path, tokenizer, {"name": "kto"}, ANSWERS)
    model = _load(folder)
    batch = task.collate(encoded, list(range(len(encoded))), 0)
    with torch.no_grad():
        logits = model(**{k: batch[k] for k in task.model_inputs}).logits
    unscored = task.metrics(task.outputs(logits, batch), None)  # `paretune eval`: no reference pass
    assert unscored["rewards/chosen"] is None and unscored["rewards/accuracies"] is None
    task.score_reference(model, {"train": encoded}, "cpu", None)
    batch = task.collate(encoded, list(range(len(encoded))), 0)
    metrics = task.metrics(task.outputs(logits, batch), None)
    own = task.scores(logits, batch["labels"]).chosen
    assert metrics["logps/chosen"] == pytest.approx(float(own[[0, 2]].mean()))  # rows 1 and 3 are desirable
    assert metrics["logps/rejected"] == pytest.approx(float(own[[1, 3]].mean()))
    assert metrics["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)  # the model is its own reference


# --- errors that name file, row and field ----------------------------------------------------
def _problems(tmp_path: Path, rows: list, loss: str = "dpo") -> list[tuple]:
    options = task_options({"type": "preference", "loss": {"name": loss}})
    with pytest.raises(DataError) as err:
        task_class("preference").read_examples(_write(tmp_path / "bad.jsonl", rows), options)
    return [(p.file.endswith("bad.jsonl"), p.row, p.field) for p in err.value.problems]


def test_bad_rows_are_named_by_file_row_and_field(tmp_path):
    rows = [
        {"prompt": "a", "chosen": "yes"},  # row 1: no rejected
        {"prompt": "a", "chosen": "same", "rejected": "same"},  # row 2: identical
        {"prompt": "a", "chosen": 3, "rejected": "no"},  # row 3: not text
        {"prompt": "a", "chosen": [{"role": "assistant", "content": 5}], "rejected": "no"},  # row 4
        {"chosen": "yes", "rejected": "no"},  # row 5: no prompt
        {"prompt": "a", "chosen": "yes", "rejected": "no"},  # fine
    ]
    assert _problems(tmp_path, rows) == [(True, 1, "rejected"), (True, 2, "rejected"), (True, 3, "chosen"),
                                         (True, 4, "chosen[0]"), (True, 5, "prompt")]


def test_kto_rows_need_a_boolean_label(tmp_path):
    rows = [{"prompt": "a", "completion": "b", "label": "maybe"}, {"prompt": "a", "label": True}]
    assert _problems(tmp_path, rows, "kto") == [(True, 1, "label"), (True, 2, "completion")]


def test_an_answer_truncated_to_nothing_is_named(llama, tmp_path):
    _, tokenizer = llama
    rows = [{"prompt": "the film was good " * 20, "chosen": "positive", "rejected": "negative"}]
    options = task_options({"type": "preference"})
    cls = task_class("preference")
    examples = cls.read_examples(_write(tmp_path / "long.jsonl", rows), options)
    with pytest.raises(DataError) as err:
        cls(options, []).encode(examples, [ex.label for ex in examples], tokenizer, 16)
    assert [(p.row, p.field) for p in err.value.problems] == [(1, "chosen"), (1, "rejected")]
    assert "data.max_length=16" in str(err.value)


def test_inspect_marks_the_scored_tokens_of_each_answer(llama, tmp_path):
    _, tokenizer = llama
    options = task_options({"type": "preference"})
    cls = task_class("preference")
    examples = cls.read_examples(_write(tmp_path / "rows.jsonl", PAIRS), options)
    lines = cls(options, []).inspect(examples, tokenizer, 64, shown=1)
    assert lines[0] == "4 rows, loss dpo"
    assert lines[1:] == ["", "row 1, chosen: 12 tokens, 2 scored", lines[3], "", "row 1, rejected: 12 tokens, 2 scored",
                         lines[6]]
    assert "«positive<|im_end|>»" in lines[3] and "«negative<|im_end|>»" in lines[6]

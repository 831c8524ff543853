"""Preference tuning of decoder-only language models: DPO, ORPO, SimPO and KTO on the one loop.

Rows are pairs (a prompt, a chosen and a rejected answer) or, for KTO, unpaired answers labelled
desirable or not (data/preference_rows.py). Each answer is rendered after its prompt with the
same chat template and masking as SFT (tasks/generation.py, tasks/chat_format.py): only answer
tokens and the end-of-turn token are scored. An example holds its two sequences end to end
(chosen then rejected; KTO: the completion, then the prompt with the next row's completion for
the KL estimate), and a batch lays them out as generation does (packed, or padded rows), with
logits kept only at answer positions.

The loss (`task.loss`, one module per loss in tasks/preference_losses/) reads per-sequence sums
of answer log-probs. The reference model's log-probs are computed once, before the first step,
with the model as it starts (adapters disabled), and kept per token with the encoded data, in
the run folder (`reference_logps.safetensors`) and beside the tokenization cache, so a resumed or
repeated run does not compute them again and no second copy of the model is held while training. They reach the loss inside the batch's
`labels`, a table with one row per answer token: its id, its sequence slot, the reference
log-prob of it, and whether its row's answer is desirable (KTO).

After training, the prompts of the validation pairs are answered by greedy generation and scored
against the chosen answers (exact_match, the task's structured match), as for SFT.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from safetensors import safe_open
from safetensors.numpy import save_file

from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.data.preference_rows import answer_text, read_preference_examples
from paretune.errors import DataError, DataProblem
from paretune.tasks import chat_format
from paretune.tasks.base import IGNORE_INDEX
from paretune.tasks.generation import GenerationOptions, GenerationTask
from paretune.tasks.preference_losses import LOSSES, SequenceScores, loss_options_types

LossConfig = Annotated[Union[loss_options_types()], Field(discriminator="name")]
REFERENCE_FILE = "reference_logps.safetensors"
# Per-example outputs: rewards and summed log-probs of the chosen and rejected answers (KTO: the
# completion's in the chosen or the rejected column, by its label; NaN in the other).
OUTPUT_COLUMNS = ("reward_chosen", "reward_rejected", "logps_chosen", "logps_rejected")


class PreferenceOptions(GenerationOptions):
    type: Literal["preference"] = "preference"  # type: ignore[assignment]
    loss: LossConfig = Field(default_factory=lambda: LOSSES["dpo"].options(),
                             description="The preference loss and its options: dpo, orpo, simpo or kto.")

    @field_validator("train_on_prompt")
    @classmethod
    def _answers_only(cls, value: bool) -> bool:
        if value:
            raise ValueError("preference losses compare answers: task.train_on_prompt must be false")
        return value


class PreferenceTask(GenerationTask):
    name = "preference"
    options = PreferenceOptions
    config: PreferenceOptions
    default_metric = "loss"
    default_method = "lora"  # the reference is then the base with the adapter off: no second copy
    metric_names = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                    "logps/chosen", "logps/rejected")
    weigh_accumulation_by_units = False  # every loss is a mean over rows (pairs)

    @property
    def loss_kind(self):
        return LOSSES[self.config.loss.name]

    @classmethod
    def read_examples(cls, path, config, **options) -> list[Example]:
        kind = "pairs" if LOSSES[config.loss.name].pairs else "answers"
        return read_preference_examples(path, kind=kind, **options)

    def loss_units(self, encoded: Encoded) -> None:
        return None

    # --- encoding -----------------------------------------------------------------------
    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        if targets is None:  # prediction input: the prompts, as generation encodes them
            return super().encode(examples, None, tokenizer, max_length)
        chat = self.prepare_tokenizer(tokenizer)
        end_ids = chat_format.end_of_turn_ids(tokenizer)
        arrays: dict[str, list[np.ndarray]] = {"input_ids": [], "token_labels": [], "first_length": [],
                                               "desirable": [], "reference_logps": []}
        problems = []
        for i, ex in enumerate(examples):
            answers = self._answers(examples, i)
            rows = [self._answer_row(ex.text, answer, tokenizer, chat, end_ids, max_length) for answer, _ in answers]
            for (_, field), (_, labels) in zip(answers, rows):
                if field and not (labels != IGNORE_INDEX).any():
                    problems.append(DataProblem("data", f"no token of '{field}' left after truncation to "
                                                f"data.max_length={max_length}; raise data.max_length or shorten "
                                                "the prompt", row=ex.row, field=field, line=ex.line))
            arrays["input_ids"].append(np.concatenate([ids for ids, _ in rows]).astype(np.int32))
            arrays["token_labels"].append(np.concatenate([labels for _, labels in rows]))
            arrays["first_length"].append(np.asarray([len(rows[0][0])], dtype=np.int64))
            arrays["desirable"].append(np.asarray([ex.label.get("desirable", True)], dtype=np.int64))
            # NaN until computed: a reference-based loss never trains on a missing reference unnoticed.
            arrays["reference_logps"].append(np.full(len(arrays["input_ids"][-1]), np.nan, dtype=np.float32))
        if problems:
            raise DataError(problems)
        return Encoded(**arrays)

    def _answers(self, examples: list[Example], i: int) -> list[tuple[list[dict], str | None]]:
        """The example's two answers and the field each came from (None: KTO's mismatched answer)."""
        label = examples[i].label
        if "chosen" in label:
            return [(label["chosen"], "chosen"), (label["rejected"], "rejected")]
        other = examples[(i + 1) % len(examples)].label["completion"]  # the KL estimate's answer
        return [(label["completion"], "completion"), (other, None)]

    def _answer_row(self, prompt: list[dict], answer: list[dict], tokenizer, chat: bool, end_ids: set[int],
                    max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of prompt + answer, cut to max_length, and their shifted answer targets."""
        messages = self.conversation(Example(prompt + answer, None, 0))
        if chat:
            row = chat_format.chat_tokens(tokenizer, messages, False, end_ids)
        else:
            row = chat_format.raw_tokens(tokenizer, chat_format.raw_prompt(messages), answer_text(answer), False)
        cut = chat_format.TokenRow(row.ids[:max_length], row.trained[:max_length])
        return np.asarray(cut.ids, dtype=np.int64), chat_format.shifted_targets(cut, IGNORE_INDEX)

    def inspect(self, examples: list[Example], tokenizer, max_length: int, shown: int = 3) -> list[str]:
        """The first rows as the model sees them: each answer after its prompt, scored tokens
        «marked»; encoding every row raises what training would (an answer truncated away)."""
        from paretune.tasks.inspection import marked_text

        encoded = self.encode(examples, [ex.label for ex in examples], tokenizer, max_length)
        names = ("chosen", "rejected") if self.loss_kind.pairs else ("completion", "next row's completion (KL)")
        lines = [f"{len(examples)} rows, loss {self.config.loss.name}"]
        for i, ex in enumerate(examples[:shown]):
            cut = int(encoded.first_length[i][0])
            for name, part in zip(names, (slice(0, cut), slice(cut, None))):
                ids, labels = encoded.input_ids[i][part], encoded.token_labels[i][part]
                scored = np.r_[False, labels[:-1] != IGNORE_INDEX]
                lines += ["", f"row {ex.row}, {name}: {len(ids)} tokens, {int(scored.sum())} scored",
                          marked_text(tokenizer, ids.tolist(), scored.tolist())]
        return lines

    # --- batches ------------------------------------------------------------------------
    def collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        if encoded.get("first_length") is None:  # prompts only (prediction input)
            return super().collate(encoded, indices, pad_id)
        ids, labels, refs, flags = [], [], [], []
        for i in indices:
            cut = int(encoded.first_length[i][0])
            for part in (slice(0, cut), slice(cut, None)):
                ids.append(encoded.input_ids[i][part])
                labels.append(encoded.token_labels[i][part])
                refs.append(encoded.reference_logps[i][part])
            flags.append(int(encoded.desirable[i][0]))
        # Laid out as generation lays out rows (one sequence a row): `example` is the sequence slot.
        tensors = super().collate(Encoded(input_ids=ids, token_labels=labels), list(range(len(ids))), pad_id)
        kept = [lab != IGNORE_INDEX for lab in labels]  # both layouts keep answer tokens in sequence order
        table = np.stack([
            np.concatenate([lab[k] for lab, k in zip(labels, kept)]).astype(np.float64),
            np.concatenate([np.full(k.sum(), slot) for slot, k in enumerate(kept)]),
            np.concatenate([ref[k] for ref, k in zip(refs, kept)]).astype(np.float64),
            np.concatenate([np.full(k.sum(), flags[slot // 2]) for slot, k in enumerate(kept)]),
        ], axis=1)
        tensors["labels"] = torch.from_numpy(table)
        tensors["index"] = torch.as_tensor(indices, dtype=torch.int64)
        return tensors

    # --- loss and metrics ---------------------------------------------------------------
    def scores(self, logits: torch.Tensor, labels: torch.Tensor) -> SequenceScores:
        """Per-sequence sums of answer log-probs from flat logits (one row per answer token)."""
        logits = logits.reshape(-1, logits.shape[-1])
        logits = logits if logits.dtype == torch.float64 else logits.float()
        labels = labels.to(logits.device)
        slot = labels[:, 1].long()
        token_logps = -F.cross_entropy(logits, labels[:, 0].long(), reduction="none")
        n_slots = 2 * (int(slot.max()) // 2 + 1) if len(slot) else 2
        zeros = torch.zeros(n_slots, dtype=token_logps.dtype, device=logits.device)
        tokens = zeros.index_add(0, slot, torch.ones_like(token_logps))
        return SequenceScores(
            logps=zeros.index_add(0, slot, token_logps),
            tokens=tokens,
            ref_logps=zeros.index_add(0, slot, labels[:, 2].to(token_logps.dtype)),
            desirable=(zeros.index_add(0, slot, labels[:, 3].to(token_logps.dtype)) / tokens.clamp(min=1))[0::2] > 0.5,
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_kind.compute(self.config.loss, self.scores(logits, labels)).loss

    def outputs(self, logits, batch) -> list[np.ndarray]:
        """Per example: OUTPUT_COLUMNS."""
        if "labels" not in batch:
            return [np.full(len(OUTPUT_COLUMNS), np.nan) for _ in range(len(batch["index"]))]
        scores = self.scores(logits, batch["labels"])
        result = self.loss_kind.compute(self.config.loss, scores)
        columns = [result.chosen_rewards, result.rejected_rewards, scores.chosen, scores.rejected]
        rows = torch.stack([c.detach().double() for c in columns], dim=1).cpu().numpy()
        if not self.loss_kind.pairs:  # KTO: the completion's numbers go in the column of its label
            undesirable = ~scores.desirable.cpu().numpy()
            rows[undesirable] = rows[undesirable][:, [1, 0, 3, 2]]
            rows[~undesirable, 1] = rows[~undesirable, 3] = np.nan  # the KL answer's log-prob is no row's
            rows[undesirable, 0] = rows[undesirable, 2] = np.nan
        return list(rows)

    def metrics(self, outputs, targets) -> dict[str, Any]:
        """Means over rows; a reward without reference log-probs (`paretune eval` of a DPO run) is None."""
        table = np.asarray(outputs, dtype=np.float64).reshape(-1, len(OUTPUT_COLUMNS))
        chosen, rejected = table[:, 0], table[:, 1]
        if self.loss_kind.pairs:
            scored, accurate = ~np.isnan(chosen) & ~np.isnan(rejected), chosen > rejected
        else:  # a reward of the right sign: above 0 for desirable answers, below for the others
            desirable = np.isnan(rejected)
            scored = ~np.isnan(np.where(desirable, chosen, rejected))
            accurate = np.where(desirable, chosen > 0, rejected < 0)
        chosen_mean, rejected_mean = _mean(chosen), _mean(rejected)
        return {
            "rewards/chosen": chosen_mean, "rewards/rejected": rejected_mean,
            "rewards/margins": None if chosen_mean is None or rejected_mean is None else chosen_mean - rejected_mean,
            "rewards/accuracies": float(accurate[scored].mean()) if scored.any() else None,
            "logps/chosen": _mean(table[:, 2]), "logps/rejected": _mean(table[:, 3]),
        }

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        return {name: (None if np.isnan(v) else float(v)) for name, v in zip(OUTPUT_COLUMNS, output)}

    # --- the reference model --------------------------------------------------------------
    def score_reference(self, model, sets: dict[str, Encoded], device, run_dir: Path | None,
                        autocast=nullcontext, shared_dir: Path | None = None) -> None:
        """Fill every set's `reference_logps` with the model as it is now (adapters disabled).

        Read back instead when `run_dir` holds them for these very tokens (a resumed run), or
        `shared_dir` (the tokenization cache) for these tokens and this reference model (a repeated
        run): the model is recognised by what it computes on the first training rows (one small
        batch), so another base model or dtype does not reuse the scores of the first."""
        if not self.loss_kind.needs_reference:
            for encoded in sets.values():
                encoded.arrays["reference_logps"] = [np.zeros_like(r) for r in encoded.reference_logps]
            return
        fingerprint = _fingerprint(sets)
        files = [(run_dir / REFERENCE_FILE, fingerprint)] if run_dir is not None else []
        if files and _read_reference(*files[0], sets):
            return
        if shared_dir is not None:
            probe = _first_rows(sets["train"], 4)
            _score_set(self, model, probe, device, autocast)
            key = hashlib.sha256(fingerprint.encode() + np.concatenate(probe.reference_logps).tobytes()).hexdigest()
            files.append((shared_dir / f"{key[:32]}.safetensors", key))
            if _read_reference(*files[-1], sets):
                for path, stored_key in files[:-1]:  # the run folder keeps its own copy, for a resume
                    _write_reference(path, stored_key, sets)
                return
        for encoded in sets.values():
            _score_set(self, model, encoded, device, autocast)
        for path, stored_key in files:
            _write_reference(path, stored_key, sets)

    # --- generation after training ----------------------------------------------------------
    def scored_answers(self, model, tokenizer, examples: list[Example],
                       device) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Generation metrics of greedy answers to the prompts (after training, `generate_rows` of
        them, and at each evaluation with training.eval_generate), against the chosen answers; KTO
        scores its desirable completions only. The rows for samples.jsonl come with them."""
        scored = [Example(ex.text, answer_text(ex.label.get("chosen", ex.label.get("completion"))), ex.row)
                  for ex in examples if ex.label.get("desirable", True)]
        return super().scored_answers(model, tokenizer, scored, device) if scored else ({}, [])


def _mean(values: np.ndarray) -> float | None:
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else None


@torch.no_grad()
def _score_set(task: PreferenceTask, model, encoded: Encoded, device, autocast, batch_size: int = 8) -> None:
    """Reference log-probs of every answer token of `encoded`, written into its arrays."""
    was_training = model.training
    model.eval()
    without_adapter = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
    with without_adapter:
        for start in range(0, len(encoded), batch_size):
            indices = list(range(start, min(start + batch_size, len(encoded))))
            batch = task.collate(encoded, indices, 0)
            with autocast():
                # No KV cache: with one, transformers ignores the packed position ids.
                logits = model(**{k: batch[k].to(device) for k in task.model_inputs}, use_cache=False).logits
            logits = logits.reshape(-1, logits.shape[-1]).float()
            targets = batch["labels"][:, 0].long().to(device)
            token_logps = (-F.cross_entropy(logits, targets, reduction="none")).cpu().numpy()
            offset = 0
            for i in indices:  # answer tokens come back in the order the example holds them
                kept = np.flatnonzero(encoded.token_labels[i] != IGNORE_INDEX)
                reference = np.zeros(len(encoded.input_ids[i]), dtype=np.float32)
                reference[kept] = token_logps[offset:offset + len(kept)]
                encoded.reference_logps[i] = reference
                offset += len(kept)
    if was_training:
        model.train()


def _first_rows(encoded: Encoded, n: int) -> Encoded:
    return Encoded(**{name: rows[:n] for name, rows in encoded.arrays.items()})


def _fingerprint(sets: dict[str, Encoded]) -> str:
    digest = hashlib.sha256()
    for name, encoded in sorted(sets.items()):
        digest.update(name.encode())
        for ids, labels in zip(encoded.input_ids, encoded.token_labels):
            digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _read_reference(path: Path, fingerprint: str, sets: dict[str, Encoded]) -> bool:
    if not path.is_file():
        return False
    with safe_open(str(path), framework="np") as f:
        if (f.metadata() or {}).get("fingerprint") != fingerprint:
            return False
        flat = {name: f.get_tensor(name) for name in sets}
    for name, encoded in sets.items():
        bounds = np.cumsum([0, *encoded.lengths()])
        encoded.arrays["reference_logps"] = [flat[name][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return True


def _write_reference(path: Path, fingerprint: str, sets: dict[str, Encoded]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({name: np.concatenate(e.reference_logps) for name, e in sets.items()}, str(tmp),
              metadata={"fingerprint": fingerprint})
    os.replace(tmp, path)

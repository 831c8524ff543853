"""Generative fine-tuning of decoder-only language models: instruction and chat tuning.

Rows are raw text, prompt/completion, instruction/output or chat conversations (data/chat_rows.py),
rendered with the tokenizer's chat template, a named one or a Jinja file (tasks/chat_format.py).
The template is set on the tokenizer, which is saved with the model, so `generate`, `eval` and
`serve` use the one training used.

Masking: only answer tokens are targets by default (`train_on_prompt` trains the prompt too), the
end-of-turn token always is, and a row left with no target is an error naming it. A row longer than
`data.max_length` keeps its last answer: its prompt loses tokens from the start (the question
right before the answer stays); how many rows were cut is logged and written to data.json
(`data_stats`).
Targets are shifted when encoding, so the loss needs no shift and packed examples never predict
each other's tokens.

Packing (on by default): a batch's examples are laid end to end in one row without padding; the
position ids restart at each example, which transformers turns into a block-diagonal causal mask
(attention never crosses examples). Logits are computed only where there is a target
(`logits_to_keep`), which on an instruction set with short answers skips most of the LM head.
The loss is a mean over target tokens, weighted by target tokens across gradient accumulation and
processes (`loss_units`), so packed and unpacked training take the same steps.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from paretune.data.chat_rows import read_generation_examples
from paretune.data.collation import pad_rows
from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.errors import DataError, DataProblem, ParetuneError
from paretune.evaluation.generation_metrics import check_match, generation_metrics, normalise, structured_equal
from paretune.tasks import chat_format
from paretune.tasks.base import IGNORE_INDEX, Task, TaskOptions
from paretune.tasks.decoding import DecodeSettings, generate_texts

log = logging.getLogger("paretune")

# Raised when what is trained changes, so cached encodings made by an earlier rule are not reused.
MASKING_VERSION = 3
# samples.jsonl (written by the runner after the final evaluation): the first rows answered, each
# text at most this long, so that the run page shows them at once whatever generate_rows is.
SAMPLE_ROWS = 50
SAMPLE_CHARS = 2000


class GenerationOptions(TaskOptions):
    type: Literal["generation"] = "generation"
    chat: bool | None = Field(None, description="Render rows with the chat template (default: when the "
                                                "tokenizer or task.chat_template gives one; false: raw text).")
    chat_template: str | None = Field(None, description="A named template (chatml) or a Jinja file; "
                                                        "default: the tokenizer's own.")
    system_prompt: str | None = Field(None, description="System message put first in conversations without one.")
    train_on_prompt: bool = Field(False, description="Train on prompt tokens too (default: answers only).")
    packing: bool = Field(True, description="Pack a batch's examples into one row, attention kept within each.")
    max_new_tokens: int = Field(64, ge=1, description="Most tokens generated per answer (evaluation, generate).")
    generate_rows: int = Field(200, ge=0, description="Validation rows answered by generation after training "
                                                      "for exact_match and the other text metrics (0: none).")
    match: str | None = Field(None, description="Structured-output metric: regex:PATTERN, json:FIELD, or "
                                                "json-list (micro F1 over the items of JSON lists).")

    @field_validator("match")
    @classmethod
    def _known_match(cls, match: str | None) -> str | None:
        return check_match(match) if match else match


class GenerationTask(Task):
    name = "generation"
    options = GenerationOptions
    config: GenerationOptions
    auto_model = "AutoModelForCausalLM"
    default_metric = "perplexity"
    metric_names = ("perplexity", "token_accuracy", "target_tokens")
    stratify = False
    peft_task_type = "CAUSAL_LM"
    read_logits = "logits[0, -1].argmax()  # the next token"
    weigh_accumulation_by_units = True
    generates = True
    # `loss` is the mean cross-entropy of flat LM-head logits: training.chunked_loss may run the head
    # and that loss a chunk of tokens at a time (engine/chunked_loss.py).
    token_cross_entropy = True
    # Defaults for what config and batching leave to the task (wired in config/schema.py and
    # data/batching.py): instruction rows (a news paragraph, then a one-word answer) run past 128
    # tokens, which TRL (1024) and LLaMA-Factory (2048) would not cut; and `batch_tokens: auto`'s
    # floor of 256 made 2 AG News rows a step. SmolLM2 LoRA on examples/chat.yaml (6 steps, one
    # thread, a CPU shared at load 10) trained 16.7 tokens/s at 256 tokens a batch and 13.0 at
    # 1,024: no per-token gain or loss beyond that noise on a CPU (accelerators gain from larger
    # batches), so the floor is what the examples train well with: 1,024, a quarter of the steps.
    default_max_length = 1024
    auto_min_batch_tokens = 1024

    def __init__(self, config: GenerationOptions, label_names: list[str]):
        super().__init__(config, [])
        # Packed rows need no attention mask: position ids restarting at 0 mark the examples.
        self.packed = config.packing
        first = "position_ids" if config.packing else "attention_mask"
        self.model_inputs = ("input_ids", first, "logits_to_keep")

    @classmethod
    def read_examples(cls, path, config: TaskOptions, **options) -> list[Example]:
        return read_generation_examples(path, **options)

    @classmethod
    def infer_labels(cls, examples, config) -> list[str]:
        return []

    def check_raw(self, raw: Any) -> list[str]:
        return []  # answers are free text, not classes

    def parse_label(self, raw: Any) -> Any:
        return raw

    def parse(self, examples, file, field) -> list[Any]:
        return [ex.label for ex in examples]

    def model_kwargs(self) -> dict[str, Any]:
        # No KV cache in training: with one, transformers ignores the packed position ids.
        return {"use_cache": False}

    # --- encoding -----------------------------------------------------------------------
    def prepare_tokenizer(self, tokenizer) -> bool:
        """Set the configured template on the tokenizer (saved with it); whether rows are chat."""
        if self.config.chat_template:
            try:
                tokenizer.chat_template = chat_format.load_template(self.config.chat_template)
            except ParetuneError:
                if not tokenizer.chat_template:  # a run's saved tokenizer carries it: the file may be gone
                    raise
        if tokenizer.eos_token_id is None and tokenizer.sep_token_id is not None:
            tokenizer.eos_token = tokenizer.sep_token  # BERT-style vocabularies end texts with [SEP]
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token
        chat = self.config.chat if self.config.chat is not None else bool(tokenizer.chat_template)
        if chat and not tokenizer.chat_template:
            raise DataError(DataProblem("task.chat_template", "task.chat is true but the tokenizer has no chat "
                                        "template: name one (task.chat_template: chatml, or a Jinja file)"))
        return chat

    def conversation(self, example: Example) -> list[dict]:
        messages = list(example.text)
        if self.config.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.config.system_prompt})
        return messages

    def token_row(self, example: Example, tokenizer, chat: bool, end_ids: set[int]) -> chat_format.TokenRow:
        on_prompt = self.config.train_on_prompt
        if isinstance(example.text, str):  # raw text: every token is a target
            return chat_format.raw_tokens(tokenizer, "", example.text, True)
        messages = self.conversation(example)
        if chat:
            return chat_format.chat_tokens(tokenizer, messages, on_prompt, end_ids)
        answer = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
        return chat_format.raw_tokens(tokenizer, chat_format.raw_prompt(messages), answer, on_prompt)

    def prompt_ids(self, example: Example, tokenizer, chat: bool) -> list[int]:
        """The tokens a model answers: the conversation before its last answer, ready for the answer."""
        if isinstance(example.text, str):
            return tokenizer(example.text, add_special_tokens=True)["input_ids"]
        messages = self.conversation(example)
        if messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if chat:
            return tokenizer(chat_format.render(tokenizer, messages, True), add_special_tokens=False)["input_ids"]
        return tokenizer(chat_format.raw_prompt(messages), add_special_tokens=True)["input_ids"]

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        chat = self.prepare_tokenizer(tokenizer)
        if targets is None:  # prediction input: the prompts, next-token logits at their ends
            ids = [np.asarray(self.prompt_ids(ex, tokenizer, chat)[-max_length:], dtype=np.int32) for ex in examples]
            return Encoded(input_ids=ids)
        input_ids, token_labels, cuts, empty, end_trained = [], [], [], [], False
        end_ids = chat_format.end_of_turn_ids(tokenizer)
        for ex in examples:
            row = self.token_row(ex, tokenizer, chat, end_ids)
            fitted = chat_format.fit_row(row, max_length, tokenizer.bos_token_id)
            labels = chat_format.shifted_targets(fitted.row, IGNORE_INDEX)
            if not (labels != IGNORE_INDEX).any():
                empty.append((ex, any(row.trained[1:])))
            end_trained = end_trained or bool(np.isin(labels, list(end_ids)).any())
            input_ids.append(np.asarray(fitted.row.ids, dtype=np.int32))
            token_labels.append(labels)
            cuts.append(np.asarray([fitted.prompt_cut, fitted.answer_cut], dtype=np.int32))
        self._check_targets(empty, end_trained, max_length)
        return Encoded(input_ids=input_ids, token_labels=token_labels, tokens_cut=cuts)

    def data_stats(self, encoded: Encoded, max_length: int, what: str = "training") -> dict[str, int]:
        """How many rows were longer than `max_length` (for data.json), logged as a warning: rows
        whose prompt lost its start, and rows whose answer itself did not fit."""
        cuts = np.asarray(encoded.get("tokens_cut") or np.zeros((0, 2)), dtype=np.int64).reshape(-1, 2)
        prompts, answers = int((cuts[:, 0] > 0).sum()), int((cuts[:, 1] > 0).sum())
        if prompts:
            log.warning("%d of %d %s rows are longer than data.max_length=%d: their prompts were cut from the "
                        "start, answers kept", prompts, len(encoded), what, max_length)
        if answers:
            log.warning("%d of %d %s rows have answers longer than data.max_length=%d by themselves: cut at the "
                        "end (raise data.max_length)", answers, len(encoded), what, max_length)
        return {"rows_prompt_cut": prompts, "rows_answer_cut": answers}

    @staticmethod
    def _check_targets(empty: list[tuple[Example, bool]], end_trained: bool, max_length: int) -> None:
        """Rows with nothing to learn, and data that never teaches the model to stop, are errors."""
        problems = [DataProblem("data", (
            f"no answer token left to train on after truncation to data.max_length={max_length}; raise "
            "data.max_length or shorten the prompt") if truncated else (
            "the chat template leaves no token of this conversation to train on (does it render "
            "assistant turns?); check it with `paretune inspect CONFIG`"), row=ex.row, line=ex.line)
            for ex, truncated in empty]
        if not end_trained and not problems:
            problems.append(DataProblem("data", "no row trains an end-of-turn or EOS token, so the model would "
                                        "never learn to stop; the chat template must end assistant turns with "
                                        "one (see `paretune inspect CONFIG`)"))
        if problems:
            raise DataError(problems)

    def inspect(self, examples: list[Example], tokenizer, max_length: int, shown: int = 3) -> list[str]:
        """The first examples with target tokens marked «like this», and target-token counts;
        encoding all of them raises what training would (nothing to train, EOS never trained)."""
        from paretune.tasks.inspection import marked_text

        encoded = self.encode(examples, [ex.label for ex in examples], tokenizer, max_length)
        units = self.loss_units(encoded)
        lines = [f"{len(examples)} rows, {int(units.sum())} target tokens of {encoded.n_tokens()} "
                 f"({units.sum() / max(encoded.n_tokens(), 1):.1%}); fewest in a row {units.min()}, most {units.max()}"]
        cut = self.data_stats(encoded, max_length, "inspected")
        if any(cut.values()):
            lines[0] += (f"; {cut['rows_prompt_cut']} prompts cut at their start to data.max_length={max_length}"
                         + (f", {cut['rows_answer_cut']} answers cut" if cut["rows_answer_cut"] else ""))
        for i, ex in enumerate(examples[:shown]):
            trained = np.r_[False, encoded.token_labels[i][:-1] != IGNORE_INDEX]
            lines += ["", f"row {ex.row}: {len(trained)} tokens, {int(trained.sum())} trained",
                      marked_text(tokenizer, encoded.input_ids[i].tolist(), trained.tolist())]
        return lines

    def encoding_key(self) -> dict[str, Any]:
        key = {**super().encoding_key(), "masking": MASKING_VERSION}
        if self.config.chat_template:  # the file's text, not its name, decides the tokens
            text = chat_format.load_template(self.config.chat_template)
            key["chat_template_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        return key

    def loss_units(self, encoded: Encoded) -> np.ndarray:
        labels = encoded.get("token_labels")
        if labels is None:
            return np.ones(len(encoded), dtype=np.int64)
        return np.fromiter(((t != IGNORE_INDEX).sum() for t in labels), dtype=np.int64, count=len(labels))

    # --- batches, loss, metrics -----------------------------------------------------------
    def collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        rows = [encoded.input_ids[i] for i in indices]
        targets = encoded.get("token_labels")
        if targets is not None:
            labels = [targets[i] for i in indices]
        else:  # no answers: keep the last position's logits (the next token)
            labels = [np.r_[np.full(len(r) - 1, IGNORE_INDEX), 0] for r in rows]
        if self.config.packing:
            width = sum(len(r) for r in rows)
            batch = {
                "input_ids": np.concatenate(rows)[None].astype(np.int64),
                "position_ids": np.concatenate([np.arange(len(r)) for r in rows])[None],
                "example": np.concatenate([np.full(len(r), j) for j, r in enumerate(rows)])[None],
            }
            label_rows = np.concatenate(labels)[None]
        else:
            width = max(len(r) for r in rows)
            batch = {
                "input_ids": pad_rows(rows, width, pad_id),
                "attention_mask": pad_rows([np.ones(len(r)) for r in rows], width, 0),
                "example": pad_rows([np.full(len(r), j) for j, r in enumerate(rows)], width, -1),
            }
            label_rows = pad_rows(labels, width, IGNORE_INDEX)
        keep = label_rows != IGNORE_INDEX
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in batch.items()}
        tensors["logits_to_keep"] = torch.from_numpy(keep)  # a boolean mask: logits come back flat
        tensors["example"] = tensors["example"][tensors["logits_to_keep"]]
        tensors["index"] = torch.as_tensor(indices, dtype=torch.int64)
        if targets is not None:
            tensors["labels"] = torch.from_numpy(label_rows[keep])
        return tensors

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over target tokens (logits arrive flat: one row per kept position)."""
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))

    def outputs(self, logits, batch) -> list[np.ndarray]:
        """Per example: [summed target log-loss, target tokens, correctly predicted target tokens]."""
        logits = logits.float().reshape(-1, logits.shape[-1])
        example = batch["example"].to(logits.device)
        n = len(batch["index"])
        if "labels" not in batch:
            return [np.zeros(3) for _ in range(n)]
        labels = batch["labels"].to(logits.device)
        nll = F.cross_entropy(logits, labels, reduction="none")
        correct = (logits.argmax(-1) == labels).float()
        sums = torch.zeros(n, 3, dtype=torch.float64, device=logits.device)
        sums[:, 0].index_add_(0, example, nll.double())
        sums[:, 1].index_add_(0, example, torch.ones_like(nll, dtype=torch.float64))
        sums[:, 2].index_add_(0, example, correct.double())
        return list(sums.cpu().numpy())

    def metrics(self, outputs, targets) -> dict[str, Any]:
        total = np.sum(outputs, axis=0) if outputs else np.zeros(3)
        tokens = max(total[1], 1.0)
        return {
            "perplexity": float(np.exp(min(total[0] / tokens, 50.0))),
            "token_accuracy": float(total[2] / tokens),
            "target_tokens": int(total[1]),
        }

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        return {"target_tokens": int(output[1])}

    # --- generation ---------------------------------------------------------------------
    def answer(self, model, tokenizer, examples: list[Example], device, settings: DecodeSettings | None = None,
               text_is_user_turn: bool = False) -> list[str]:
        """Generated answers (greedy, `max_new_tokens` unless `settings` say otherwise). With
        `text_is_user_turn`, a plain text in chat mode is the user's message (the server, predict)."""
        chat = self.prepare_tokenizer(tokenizer)
        if text_is_user_turn and chat:
            examples = [Example([{"role": "user", "content": ex.text}], ex.label, ex.row)
                        if isinstance(ex.text, str) else ex for ex in examples]
        prompts = [self.prompt_ids(ex, tokenizer, chat) for ex in examples]
        return generate_texts(model, tokenizer, prompts, settings or DecodeSettings(self.config.max_new_tokens), device)

    def answer_examples(self, model, tokenizer, examples, device) -> list[dict[str, Any]]:
        return [{"completion": text} for text in self.answer(model, tokenizer, examples, device, text_is_user_turn=True)]

    def model_metrics(self, model, tokenizer, examples: list[Example], device) -> dict[str, Any]:
        """exact_match, contains, ROUGE-L, BLEU/chrF of greedy answers to the first
        `generate_rows` examples with a reference answer."""
        return self.model_metrics_and_samples(model, tokenizer, examples, device)[0]

    def model_metrics_and_samples(self, model, tokenizer, examples: list[Example],
                                  device) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """`model_metrics` and the first SAMPLE_ROWS rows it answered (`answer_samples`), which the
        runner writes to the run folder's samples.jsonl: one generation pass gives both."""
        scored = [ex for ex in examples if ex.label is not None][: self.config.generate_rows]
        return self.scored_answers(model, tokenizer, scored, device) if scored else ({}, [])

    def answer_metrics(self, model, tokenizer, examples: list[Example], device) -> dict[str, Any]:
        """The text metrics of greedy answers to `examples` (all of them; each has a reference),
        after training and at each evaluation (training.eval_generate, engine/eval_generate.py)."""
        return self.scored_answers(model, tokenizer, examples, device)[0]

    def scored_answers(self, model, tokenizer, examples: list[Example],
                       device) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Greedy answers to `examples` (each has a reference): their metrics and the first rows."""
        answers = self.answer(model, tokenizer, examples, device)
        references = [str(ex.label) for ex in examples]
        return (generation_metrics(answers, references, self.config.match),
                self.answer_samples(examples, answers, references))

    def answer_samples(self, examples: list[Example], answers: list[str],
                       references: list[str]) -> list[dict[str, Any]]:
        """What a reader of the run checks the scores against: row, prompt, reference, answer and
        whether they match (task.match's rule, else exact_match's: case and spacing aside), for
        the first SAMPLE_ROWS rows, each text cut to SAMPLE_CHARS (a prompt keeps its end)."""
        samples = []
        for example, answer, reference in list(zip(examples, answers, references))[:SAMPLE_ROWS]:
            if self.config.match:
                matched = structured_equal(answer, reference, self.config.match)
            else:
                matched = normalise(answer) == normalise(reference)
            samples.append({"row": example.row, "prompt": _cut(self._prompt_text(example), keep_end=True),
                            "reference": _cut(reference), "answer": _cut(answer), "match": bool(matched)})
        return samples

    def _prompt_text(self, example: Example) -> str:
        if isinstance(example.text, str):
            return example.text
        messages = self.conversation(example)
        if messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if len(messages) == 1:
            return str(messages[0]["content"])
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _cut(text: str, keep_end: bool = False) -> str:
    if len(text) <= SAMPLE_CHARS:
        return text
    return "…" + text[-SAMPLE_CHARS:] if keep_end else text[:SAMPLE_CHARS] + "…"

"""Token classification (NER) over words, with IOB1, IOB2 or BIOES tags.

Words are split into sub-words by the tokenizer; by default only each word's first sub-word
carries the word's tag and the rest are ignored by the loss (the common choice, and the one
whose word-level scores match conlleval). Scoring is at word level and entity level: a word
whose first sub-word was cut off by `max_length` is predicted `O`, so truncation costs recall
instead of silently shrinking the gold set.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from paretune.data.examples import Example
from paretune.evaluation.ner_metrics import detect_tag_scheme, ner_metrics, tags_to_spans
from paretune.data.collation import collate_text, pad_rows
from paretune.data.encoded import Encoded
from paretune.tasks.base import IGNORE_INDEX as IGNORE
from paretune.tasks.base import Task, TaskOptions, check_known, sort_labels


class NerOptions(TaskOptions):
    type: Literal["ner"] = "ner"
    tag_scheme: Literal["auto", "iob1", "iob2", "bioes"] = Field("auto", description="NER tag scheme.")
    label_all_subwords: bool = Field(
        False, description="NER: train on every sub-word of a word (default: first sub-word only)."
    )


class NerTask(Task):
    name = "ner"
    options = NerOptions
    config: NerOptions
    auto_model = "AutoModelForTokenClassification"
    default_metric = "f1"
    metric_names = ("precision", "recall", "f1", "f1_macro", "accuracy")
    word_level = True
    min_labels = 2
    stratify = False  # a sentence's tags are a sequence: no strata
    peft_task_type = "TOKEN_CLS"
    read_logits = "[model.config.id2label[i] for i in logits.argmax(-1)[0].tolist()]  # a tag per token"

    @classmethod
    def infer_labels(cls, examples: list[Example], config: NerOptions) -> list[str]:
        # The scheme is settled here, from the training tags, and saved with the run config.
        if config.tag_scheme == "auto":
            config.tag_scheme = detect_tag_scheme([list(map(str, ex.label)) for ex in examples])
        if config.labels:
            return list(config.labels)
        tags = {str(tag) for ex in examples for tag in ex.label}
        # "O" first, then entity tags grouped by type: readable confusion matrices and label maps.
        return sorted(tags, key=lambda t: (t != "O", t[2:], t)) if tags else sort_labels(tags)

    @classmethod
    def reader_options(cls, config: NerOptions) -> dict[str, Any]:
        return {"tag_scheme": config.tag_scheme}

    def check_raw(self, raw: Any) -> list[str]:
        return []  # the reader checks tag lists and each tag's form, where it knows every tag's line

    def parse_label(self, raw: Any) -> np.ndarray:
        return np.asarray([check_known(str(tag), self.label_to_id, "tag") for tag in raw], dtype=np.int64)

    def encode(self, examples, targets, tokenizer, max_length) -> Encoded:
        words = [list(ex.text) for ex in examples]
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        continuation = self._continuation_ids()
        input_ids, token_labels, word_starts = [], [], []
        for i, ids in enumerate(encoded["input_ids"]):
            word_ids = encoded.word_ids(i)
            starts, labels, previous = [], np.full(len(ids), IGNORE, dtype=np.int64), None
            for pos, word in enumerate(word_ids):
                if word is None:
                    continue
                if word != previous:
                    starts.append(pos)
                    if targets is not None:
                        labels[pos] = targets[i][word]
                elif targets is not None and self.config.label_all_subwords:
                    labels[pos] = continuation[targets[i][word]]
                previous = word
            input_ids.append(np.asarray(ids, dtype=np.int32))
            token_labels.append(labels)
            word_starts.append(np.asarray(starts, dtype=np.int64))
        return Encoded(input_ids=input_ids, token_labels=token_labels, word_starts=word_starts)

    def collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        """Text tensors, per-token labels (-100 on padding) and where each word starts."""
        batch = collate_text(encoded, indices, pad_id)
        if encoded.get("token_labels") is not None:
            width = batch["input_ids"].shape[1]
            batch["labels"] = torch.from_numpy(pad_rows([encoded.token_labels[i] for i in indices], width, IGNORE))
        starts = [encoded.word_starts[i] for i in indices]
        batch["word_starts"] = torch.from_numpy(pad_rows(starts, max(1, max(len(s) for s in starts)), 0))
        batch["n_words"] = torch.as_tensor([len(s) for s in starts], dtype=torch.int64)
        return batch

    def loss_units(self, encoded: Encoded) -> np.ndarray:
        """The loss is a mean over labelled tokens, not rows: count them per example."""
        labels = encoded.token_labels
        return np.fromiter(((t != IGNORE).sum() for t in labels), dtype=np.int64, count=len(labels))

    def _continuation_ids(self) -> list[int]:
        """Tag of a word's later sub-words: B-X continues as I-X when I-X exists."""
        result = []
        for tag in self.label_names:
            inside = "I-" + tag[2:] if tag[:2] in ("B-", "S-", "E-") else tag
            result.append(self.label_to_id.get(inside, self.label_to_id[tag]))
        return result

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)

    def outputs(self, logits, batch) -> list[np.ndarray]:
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        starts = batch["word_starts"].cpu().numpy()
        counts = batch["n_words"].cpu().numpy()
        return [probs[i, starts[i, : counts[i]]] for i in range(len(probs))]

    def _tags(self, output: np.ndarray, n_words: int) -> list[str]:
        tags = [self.label_names[j] for j in output.argmax(-1)] if len(output) else []
        return tags + ["O"] * (n_words - len(tags))

    def metrics(self, outputs, targets) -> dict[str, Any]:
        gold = [[self.label_names[j] for j in target] for target in targets]
        predicted = [self._tags(out, len(g)) for out, g in zip(outputs, gold)]
        return ner_metrics(gold, predicted, self.config.tag_scheme)

    def readable(self, output, example, all_scores=False) -> dict[str, Any]:
        words = list(example.text)
        tags = self._tags(output, len(words))
        word_scores = output.max(-1) if len(output) else np.zeros(0)
        entities = []
        for kind, start, end in tags_to_spans(tags, self.config.tag_scheme):
            scored = word_scores[start:min(end, len(word_scores))]
            entity = {
                "type": kind,
                "text": " ".join(words[start:end]),
                "start_word": start,
                "end_word": end,
                "score": float(scored.mean()) if len(scored) else 0.0,
            }
            if example.offsets is not None:
                entity["start"] = example.offsets[start][0]
                entity["end"] = example.offsets[end - 1][1]
            entities.append(entity)
        result: dict[str, Any] = {"entities": entities}
        if all_scores:
            result["tags"] = tags
        return result

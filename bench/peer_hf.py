"""The peer: plain Hugging Face Trainer, as its documentation sets it up for fine-tuning.

Batch 32 per device, dynamic padding (DataCollatorWithPadding / DataCollatorForTokenClassification),
the Trainer's default optimizer and learning rate (5e-5, linear decay), bf16 on GPUs that have it,
fp32 on CPU. Only what a benchmark needs is changed: evaluation every `eval_steps`, no checkpoints,
no reporting integrations. Called by bench/speed.py in a subprocess of its own.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import transformers
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          AutoTokenizer, DataCollatorForTokenClassification, DataCollatorWithPadding,
                          Trainer, TrainerCallback, TrainingArguments)

from bench_data import read_conll, read_tsv


class TrainClock(TrainerCallback):
    """Training time without evaluation at each evaluation, so time-to-target is comparable."""

    def __init__(self, metric: str):
        self.metric, self.history, self.eval_s = metric, [], 0.0
        self.started = self.eval_started = None
        self.train_s, self.training = 0.0, False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.training = time.perf_counter(), True

    def on_train_end(self, args, state, control, **kwargs):
        self.train_s = time.perf_counter() - self.started - self.eval_s
        self.training = False

    def on_step_end(self, args, state, control, **kwargs):
        self.eval_started = time.perf_counter()  # an evaluation, if due, starts right after

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.training:
            return
        now = time.perf_counter()
        train_s = self.eval_started - self.started - self.eval_s
        self.eval_s += now - self.eval_started
        self.history.append({"step": state.global_step, "train_s": round(train_s, 3),
                             self.metric: metrics[f"eval_{self.metric}"]})


def _classification(spec, tokenizer):
    def encode(rows):
        enc = tokenizer([t for t, _ in rows], truncation=True, max_length=spec["max_length"])
        return [{"input_ids": ids, "attention_mask": m, "labels": y}
                for ids, m, (_, y) in zip(enc["input_ids"], enc["attention_mask"], rows)]

    train, val = read_tsv(spec["train"]), read_tsv(spec["validation"])
    labels = sorted({y for _, y in train})
    index = {y: i for i, y in enumerate(labels)}
    train = encode([(t, index[y]) for t, y in train])
    val = encode([(t, index[y]) for t, y in val])

    def metrics(pred):
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    model_class, collator = AutoModelForSequenceClassification, DataCollatorWithPadding(tokenizer)
    return train, val, labels, metrics, model_class, collator, "accuracy"


def _ner(spec, tokenizer):
    from seqeval.metrics import f1_score

    train, val = read_conll(spec["train"]), read_conll(spec["validation"])
    labels = sorted({tag for _, tags in train for tag in tags})
    index = {y: i for i, y in enumerate(labels)}

    def encode(sentences):
        enc = tokenizer([w for w, _ in sentences], is_split_into_words=True, truncation=True,
                        max_length=spec["max_length"])
        rows = []
        for i, (_, tags) in enumerate(sentences):
            previous, row_labels = None, []
            for word in enc.word_ids(i):  # label the first sub-word of each word, as the HF example does
                row_labels.append(-100 if word is None or word == previous else index[tags[word]])
                previous = word
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "labels": row_labels})
        return rows

    def metrics(pred):
        gold, guess = [], []
        for logits, ids in zip(pred.predictions, pred.label_ids):
            keep = ids != -100
            gold.append([labels[i] for i in ids[keep]])
            guess.append([labels[i] for i in np.argmax(logits, -1)[keep]])
        return {"f1": f1_score(gold, guess)}

    # Gold words cut by max_length are not scored here (the HF example's convention).
    model_class = AutoModelForTokenClassification
    return encode(train), encode(val), labels, metrics, model_class, DataCollatorForTokenClassification(tokenizer), "f1"


def _eval_steps(rows: int, evals_per_epoch: int) -> int:
    """Steps between evaluations: `evals_per_epoch` a full epoch, the last on its last step."""
    steps_per_epoch = -(-rows // 32)
    return max(1, -(-steps_per_epoch // evals_per_epoch))


def run_peer(spec: dict) -> dict:
    torch.manual_seed(spec["seed"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    setup = _ner if spec["task"] == "conll" else _classification
    train, val, labels, metrics, model_class, collator, metric = setup(spec, tokenizer)
    model = model_class.from_pretrained(spec["model"], num_labels=len(labels))
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=32, per_device_eval_batch_size=128,
        num_train_epochs=spec["epochs"], eval_strategy="steps",
        eval_steps=_eval_steps(len(train), spec["evals_per_epoch"]), save_strategy="no",
        logging_strategy="no", report_to=[], seed=spec["seed"], use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
    )
    clock = TrainClock(metric)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      data_collator=collator, compute_metrics=metrics, callbacks=[clock])
    started = time.perf_counter()
    trainer.train()
    wall_s = time.perf_counter() - started
    max_steps = trainer.state.max_steps
    if clock.history and clock.history[-1]["step"] == max_steps:
        # The last periodic evaluation scored the final weights: reuse it (paretune does too).
        final = {f"eval_{metric}": clock.history[-1][metric]}
    else:
        final = trainer.evaluate()
    n_tokens = sum(len(r["input_ids"]) for r in train) * spec["epochs"]
    train_s = clock.train_s
    return {
        "side": "peer (HF Trainer)", "metric": metric, "final": final[f"eval_{metric}"],
        "train_s": train_s, "wall_s": wall_s, "samples": len(train) * spec["epochs"], "tokens": n_tokens,
        "history": clock.history, "lr": args.learning_rate, "batching": "batch 32, dynamic padding",
        "precision": "bf16" if args.bf16 else "fp32", "optimizer": str(args.optim),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }

"""Load a finished run and predict or evaluate: the object the CLI (and the server) use.

Any stored form of model/ loads here (paretune.stored): plain transformers weights, an adapter
over its base, pruned heads, int8-dynamic (CPU), fp16/bf16, and ONNX run by ONNX Runtime. Each comes
back as a module answering `model(input_ids=..., attention_mask=...).logits`, so prediction and
evaluation below never branch on the form.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import torch
import transformers

from paretune.data.examples import Example
from paretune.data.prepare import encode_cached
from paretune.data.encoded import EvalSet
from paretune.engine.evaluate import predict_outputs
from paretune.errors import ParetuneError
from paretune.remote_code import trust_for_run
from paretune.run_folder import TASK_FILE, RunFolder
from paretune.stored import form_of, load_model, serving_device
from paretune.tasks import Task, task_class

# Words for NER on raw text: runs of word characters (keeping inner hyphens/apostrophes) or
# single punctuation marks, as CoNLL-style training data splits them.
WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    matches = list(WORD.finditer(text))
    return [m.group() for m in matches], [m.span() for m in matches]


class Predictor:
    # Whether an image input given as a str is a path to open. The CLI and the library predict the
    # user's own files; a server predicts for its callers, whose images are only ever the bytes they
    # sent, so serving/app.py turns this off and no client string reaches a file open.
    opens_image_paths = True

    def __init__(self, model, tokenizer, task: Task, max_length: int, device: torch.device, run_dir: Path):
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.max_length, self.device, self.run_dir = max_length, device, run_dir

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None, trust_remote_code: bool = False) -> "Predictor":
        """Load a finished run. `trust_remote_code=True` lets transformers import `.py` files shipped
        in the run's model/ folder: pass it only for runs you trust (paretune/remote_code.py)."""
        run = RunFolder.open(run_dir)
        model_dir = run.model_dir
        if not (model_dir / TASK_FILE).is_file():
            raise ParetuneError(f"{run_dir} has no trained model yet ({model_dir / TASK_FILE} missing): "
                                "did the run finish?")
        info = json.loads((model_dir / TASK_FILE).read_text())
        config = run.read_config()
        trust = trust_for_run(run.path, config, trust_remote_code)  # never from config.yaml alone
        task = task_class(config.task.type)(config.task, info["labels"])
        auto_class = getattr(transformers, task.auto_model)
        target = serving_device(form_of(model_dir), device)
        model = load_model(model_dir, auto_class, device=target, trust_remote_code=trust)
        tokenizer = task.load_preprocessor(str(model_dir), config.task, trust_remote_code=trust)
        task.use_preprocessor(tokenizer)
        model.to(target).eval()
        return cls(model, tokenizer, task, info["max_length"], target, run.path)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    def _examples(self, texts: Iterable[str | list[str]]) -> list[Example]:
        examples = []
        for i, text in enumerate(texts, start=1):
            if self.task.word_level and isinstance(text, str):
                words, offsets = split_words(text)
                examples.append(Example(text=words, label=None, row=i, offsets=offsets))
            else:
                examples.append(Example(text=text, label=None, row=i))
        return examples

    def predict(self, texts: list[str] | list[list[str]], all_scores: bool = False,
                batch_size: int = 64) -> list[dict[str, Any]]:
        """Texts (or word lists for NER) -> one readable prediction each, in order."""
        return self.predict_examples(self._examples(texts), all_scores, batch_size)

    def predict_examples(self, examples: list[Example], all_scores: bool = False,
                         batch_size: int = 64) -> list[dict[str, Any]]:
        empty = [ex for ex in examples if not ex.text]
        if empty:
            raise ParetuneError(f"input {empty[0].row} is empty: nothing to predict")
        named = [ex for ex in examples if self.task.takes_images and not self.opens_image_paths
                 and not isinstance(ex.text, bytes)]
        if named:
            raise ParetuneError(f"input {named[0].row} is not image bytes: this predictor opens no files "
                                "(a server takes images only as the bytes its caller sent)")
        if self.task.generates:  # a generative run answers with text
            return self.task.answer_examples(self.model, self.tokenizer, examples, self.device)
        encoded = self.task.encode(examples, None, self.tokenizer, self.max_length)
        outputs, _ = predict_outputs(self.model, self.task, encoded, batch_size, self.pad_id,
                                     self.device, labels=False)
        return [self.task.readable(out, ex, all_scores) for out, ex in zip(outputs, examples)]

    def evaluate(self, path: str | Path, *, fmt: str | None = None, text_column: str | None = None,
                 label_column: str | None = None, batch_size: int = 128) -> dict[str, Any]:
        """Metrics of this model on a labelled file (same checks as training data)."""
        config = RunFolder.open(self.run_dir).read_config()
        label_column = label_column or config.data.label_column
        examples = self.task.read_examples(
            path, config.task, fmt=fmt, text_column=text_column or config.data.text_column,
            label_column=label_column, word_level=self.task.word_level,
            encoding=config.data.encoding,
        )
        targets = self.task.parse(examples, str(path), label_column)
        encoded, _ = encode_cached(self.task, examples, targets, self.tokenizer, self.max_length, None)
        metrics = self.evaluate_set(EvalSet(encoded, targets), batch_size)
        return {**metrics, **self.task.model_metrics(self.model, self.tokenizer, examples, self.device)}

    def evaluate_set(self, eval_set: EvalSet, batch_size: int = 128) -> dict[str, Any]:
        """Metrics of this model on data already encoded (e.g. a run's prepared validation set)."""
        outputs, loss = predict_outputs(self.model, self.task, eval_set.encoded, batch_size, self.pad_id,
                                        self.device)
        return {"loss": loss, **self.task.metrics(outputs, eval_set.targets)}

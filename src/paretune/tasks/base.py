"""What a task provides: its options, label parsing, encoding, model inputs, collation, head, loss,
metrics, readable predictions, and the facts other packages ask about.

A task is one module: a pydantic options model (the `task:` section of a run config, picked by its
`type`) and a `Task` subclass, registered by one line in `paretune.tasks`. A task object is built
once per run from those options and the label names, and everything task-specific goes through it,
so the training loop, the predictor, data preparation, distillation, peft and the model card never
branch on a task's name.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from paretune.data.collation import collate_text
from paretune.data.encoded import Encoded
from paretune.data.examples import Example
from paretune.data.readers import read_examples
from paretune.errors import DataError, DataProblem
from paretune.tasks.raw_labels import marker_problem, scalar_problem, warn_declared_markers

log = logging.getLogger("paretune")

IGNORE_INDEX = -100  # target ignored by the loss (special tokens, later sub-words)

# Keys of the one `task:` section every task shared before tasks were plugins, with their old
# defaults: saved run configs hold all of them, so a key of another task is dropped, not refused.
SHARED_KEYS_BEFORE_PLUGINS = {"label_delimiter": ",", "tag_scheme": "auto", "label_all_subwords": False,
                              "threshold": 0.5}


class TaskOptions(BaseModel):
    """Base of every task's options; subclasses add `type: Literal[...]` and their own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    type: str = Field(description="The task: each registered task names its own options model.")
    labels: list[str] | None = Field(
        None, description="Label names in order; default = sorted labels seen in training data."
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_other_tasks_keys(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        foreign = [k for k in SHARED_KEYS_BEFORE_PLUGINS if k in values and k not in cls.model_fields]
        for key in foreign:
            value = values[key]
            if value != SHARED_KEYS_BEFORE_PLUGINS[key]:
                log.warning("task.%s=%r does not apply to task.type %s: ignored", key, value, values.get("type"))
        return {k: v for k, v in values.items() if k not in foreign}


class Task(ABC):
    name: ClassVar[str]  # the `type` of its options: how configs name it
    options: ClassVar[type[TaskOptions]]  # its section of the run config
    auto_model: ClassVar[str]  # transformers Auto class holding the right head
    default_metric: ClassVar[str]
    # The numbers `metrics` returns (besides "loss"): training.metric is checked against them
    # before training starts. tests/test_run_folder.py checks them against a real evaluation.
    metric_names: ClassVar[tuple[str, ...]]
    word_level: ClassVar[bool] = False  # examples are word lists (token classification)
    needs_labels: ClassVar[bool] = True  # False: a label column is not read (masked-LM pretraining)
    # What the model is called with: batch tensors by name (the loop, evaluation, distillation).
    model_inputs: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    # Fewest distinct labels training data must have (classification needs two classes).
    min_labels: ClassVar[int] = 0
    # Hold out a stratified validation split (by label text); off for list labels (no strata).
    stratify: ClassVar[bool] = True
    # What the logits are, for distillation's soft targets: a distribution over labels
    # (softmax), independent per-label probabilities (sigmoid) or values to match (value).
    soft_targets: ClassVar[Literal["softmax", "sigmoid", "value"]] = "softmax"
    peft_task_type: ClassVar[str] = "SEQ_CLS"  # how peft wraps the model's forward
    problem_type: ClassVar[str | None] = None  # transformers' config.problem_type for this head
    # Model card: a line that reads the prediction from `logits` of one text (formatted with the options).
    read_logits: ClassVar[str] = "logits"
    # Gradient accumulation weighs each micro-batch by its loss terms (`loss_units`), not equally:
    # a mean over tokens stays a mean over tokens across the micro-batches of a step.
    weigh_accumulation_by_units: ClassVar[bool] = False
    # `collate` lays a batch's examples end to end without padding (generation's packing): the
    # batch plan then budgets and counts summed lengths.
    packed: bool = False
    # What config and batching take from the task when the user sets nothing: data.max_length, and
    # the floor of `batch_tokens: auto` (None: batching's own, 256).
    default_max_length: ClassVar[int] = 128
    auto_min_batch_tokens: ClassVar[int | None] = None
    # Base model when config.model.name_or_path is omitted (None: the packaged text model).
    default_model: ClassVar[str | None] = None
    # Fine-tuning method when the config has no `method:` section (preference tuning: LoRA).
    default_method: ClassVar[str] = "full"
    # Batches by a padded-token budget (text); False: fixed-size batches (every example is one unit).
    batch_by_tokens: ClassVar[bool] = True
    cache_encoding: ClassVar[bool] = True  # encodings go to the tokenization cache
    confusion_picture: ClassVar[bool] = False  # the run folder gets confusion_matrix.png
    takes_images: ClassVar[bool] = False  # the server adds its image routes (serving/images.py)
    loader_workers: int = 0  # DataLoader worker processes that run `collate` (images decode there)
    lower_is_better: ClassVar[frozenset[str]] = frozenset(
        {"loss", "mse", "rmse", "mae", "hamming_loss", "perplexity"}
    )

    def __init__(self, config: TaskOptions, label_names: list[str]):
        self.config = config
        self.label_names = list(label_names)
        self.label_to_id = {name: i for i, name in enumerate(self.label_names)}

    # --- labels -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def infer_labels(cls, examples: list[Example], config: TaskOptions) -> list[str]:
        """Label names in a stable order, from the config or the training examples."""

    @abstractmethod
    def parse_label(self, raw: Any) -> Any:
        """Raw label -> model target; raises ValueError with a message naming the bad value."""

    def check_raw(self, raw: Any) -> list[str]:
        """The stored label's values as text, or ValueError if it is no label this task can take.

        The default suits one label per row: a list is refused and a missing-value marker
        (`NaN`, `None`, `NA`, ...) is refused unless task.labels declares it.
        """
        problem = scalar_problem(raw) or marker_problem(raw, self.config.labels)
        if problem:
            raise ValueError(problem)
        return [label_text(raw)]

    def parse(self, examples: list[Example], file: str, field: str) -> list[Any]:
        """Parse every label, collecting all problems with their row before failing."""
        targets, problems, values = [], [], []
        for ex in examples:
            try:
                values += [(ex.row, value) for value in self.check_raw(ex.label)]
                targets.append(self.parse_label(ex.label))
            except ValueError as err:
                problems.append(DataProblem(file, str(err), row=ex.row, field=field, line=ex.line))
        if problems:
            raise DataError(problems)
        warn_declared_markers(values, file, field)
        return targets

    # --- data ---------------------------------------------------------------------------
    @classmethod
    def split_key(cls) -> Callable[[Example], str] | None:
        """What a held-out validation split is stratified by (None: a plain seeded split)."""
        return (lambda ex: str(ex.label)) if cls.stratify else None

    @classmethod
    def reader_options(cls, config: TaskOptions) -> dict[str, Any]:
        """Extra keyword arguments for `read_examples` (NER: the tag scheme to check tags against)."""
        return {}

    @classmethod
    def read_examples(cls, path, config: TaskOptions, **reader_kwargs) -> list[Example]:
        """Every example of a data file (`data.readers.read_examples`'s keyword arguments); a task
        whose rows have another shape (images, chat conversations) reads them its own way."""
        return read_examples(path, **reader_kwargs, **cls.reader_options(config))

    @classmethod
    def read_prediction_inputs(cls, path, config: TaskOptions) -> list[Example] | None:
        """Inputs of `paretune predict` this task reads itself (images: a folder or a list file);
        None: a table of texts, streamed by batch_predict."""
        return None

    def sample_input(self) -> Any:
        """One input to warm a served model up with."""
        return "A short sentence to warm the model up before the first request."

    @classmethod
    def load_preprocessor(cls, source: str, config: TaskOptions, revision: str | None = None,
                          trust_remote_code: bool = False):
        """What turns examples into model inputs, for `encode`: a text model's tokenizer."""
        import transformers

        return transformers.AutoTokenizer.from_pretrained(source, revision=revision,
                                                          trust_remote_code=trust_remote_code)

    def use_preprocessor(self, preprocessor) -> None:
        """Keep what `load_preprocessor` returned, for tasks whose batches do the work of `encode`
        (images are decoded and resized in `collate`): a loaded run's task collates encodings made
        elsewhere (compression scores the parent's data with the child's task). Text: nothing to keep."""

    @abstractmethod
    def encode(self, examples: list[Example], targets: list[Any] | None, tokenizer, max_length: int) -> Encoded:
        """Tokenize examples (targets None for unlabelled prediction input)."""

    def encoding_key(self) -> dict[str, Any]:
        """Everything `encode` depends on besides examples, tokenizer and max_length (cache key)."""
        return {"task": self.name, "labels": self.label_names, **self.config.model_dump(mode="json")}

    def collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        """A batch's tensors: `model_inputs`, "labels" when labelled, "index", and what `outputs` reads."""
        return collate_text(encoded, indices, pad_id)

    def train_collate(self, encoded: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        """A training batch: `collate` plus any augmentation, which evaluation never sees."""
        return self.collate(encoded, indices, pad_id)

    def loss_units(self, encoded: Encoded) -> np.ndarray | None:
        """Terms each example adds to the mean loss, when not one per row (labelled tokens for NER):
        several processes weight their part of a batch by them."""
        return None

    # --- model --------------------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_labels": len(self.label_names),
            "id2label": dict(enumerate(self.label_names)),
            "label2id": dict(self.label_to_id),
        }
        return {**kwargs, "problem_type": self.problem_type} if self.problem_type else kwargs

    def forward(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """What `loss` and `outputs` read from one forward pass (the loop, evaluation, prediction):
        the head's logits; a task without a head (kg-completion's bi-encoder) pools hidden states."""
        return model(**inputs).logits

    @abstractmethod
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ...

    # --- evaluation and prediction ------------------------------------------------------
    def before_predicting(self, model, device, autocast=nullcontext, refresh: bool = True) -> None:
        """Called before each pass of evaluation (`refresh`: the weights may have changed) or
        prediction over a set: a task whose outputs are scored against something the model computes
        once per pass (kg-completion's entity embeddings) computes it here. Nothing by default."""

    def embedding_table(self) -> tuple[list[str], np.ndarray] | None:
        """(ids, one embedding a row) that predictions are ranked against, once `before_predicting`
        made it (kg-completion: every entity), for `paretune export --format embeddings`; None: none."""
        return None

    @abstractmethod
    def outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per-example outputs of one batch (probabilities, values or per-word label ids)."""

    @abstractmethod
    def metrics(self, outputs: list[np.ndarray], targets: list[Any]) -> dict[str, Any]:
        ...

    @abstractmethod
    def readable(self, output: np.ndarray, example: Example, all_scores: bool = False) -> dict[str, Any]:
        """One prediction as JSON-ready data for users (label and score, value, or entities)."""

    def data_stats(self, encoded: Encoded, max_length: int, what: str = "training") -> dict[str, Any]:
        """Task-specific counts for data.json (generation: rows whose prompt was cut to max_length)."""
        return {}

    def inspect(self, examples: list[Example], tokenizer, max_length: int, shown: int = 3) -> list[str]:
        """Lines for `paretune inspect`: the first examples as the model sees them, with targets."""
        encoded = self.encode(examples[:shown], self.parse(examples[:shown], "data", "label"), tokenizer, max_length)
        return [f"row {ex.row}: {tokenizer.decode(encoded.input_ids[i].tolist())!r} -> {ex.label!r}"
                for i, ex in enumerate(examples[:shown])]

    # Predictions are generated text, not read from one forward pass's logits: the Predictor (and so
    # `paretune predict` and the server) asks `answer_examples` instead.
    generates: ClassVar[bool] = False

    def answer_examples(self, model, tokenizer, examples: list[Example], device) -> list[dict[str, Any]]:
        raise NotImplementedError(f"the {self.name} task does not generate")

    def model_metrics(self, model, tokenizer, examples: list[Example], device) -> dict[str, Any]:
        """Metrics that need the model itself, not only its logits (generated text), computed
        after training and by `paretune eval`; none by default."""
        return {}

    def greater_is_better(self, metric: str) -> bool:
        return metric not in self.lower_is_better


def tokenize_texts(tokenizer, texts: list[str], max_length: int) -> list[np.ndarray]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)
    return [np.asarray(ids, dtype=np.int32) for ids in encoded["input_ids"]]


def check_known(value: str, known: dict[str, int], what: str = "label") -> int:
    if value not in known:
        shown = ", ".join(list(known)[:20])
        raise ValueError(f"unknown {what} {value!r} (known: {shown})")
    return known[value]


def label_text(raw: Any) -> str:
    """Labels are compared as text so 1, 1.0 and "1" from different formats agree."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return str(raw).strip()


def sort_labels(values: set[str]) -> list[str]:
    """Numeric labels sort numerically (so "10" follows "9"), the rest alphabetically."""
    key: Callable[[str], Any]
    try:
        [float(v) for v in values]
        key = float
    except ValueError:
        key = str
    return sorted(values, key=key)

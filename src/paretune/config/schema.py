"""The run config: typed, validated once, saved with the run.

Keys here are a public contract (docs, sweeps and other tools address them by dotted path, e.g.
`training.lr`). Every section forbids unknown keys so a typo fails loudly instead of silently
training with a default.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic.fields import FieldInfo

from paretune.config.continual import ContinualConfig
from paretune.config.distributed import DistributedConfig
from paretune.data.augment import AugmentConfig
from paretune.data.knowledge import KnowledgeConfig
from paretune.methods import method_options_types
from paretune.tasks import default_task, on_registry_change, task_class, task_options, task_options_types


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name_or_path: str | None = Field(
        None, description="Hub id or local folder; omitted = the packaged all-MiniLM-L6-v2."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype the weights are loaded in (training keeps fp32 masters)."
    )
    trust_remote_code: bool = Field(False, description="Run code shipped with the model. Off unless you trust it.")


def _task_type(value: Any) -> str | None:
    """The registered task a `task:` section names; an omitted type means the default task."""
    if isinstance(value, dict):
        return value.get("type", default_task())
    return getattr(value, "type", None)


def task_config_type() -> Any:
    """The `task:` section: one options model per registered task, picked by `type` (tasks/)."""
    members = tuple(Annotated[t, Tag(t.model_fields["type"].default)] for t in task_options_types())
    return Annotated[Union[members], Discriminator(_task_type)]


TaskConfig = task_config_type()


class DataConfig(Section):
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    format: Literal["csv", "tsv", "jsonl", "parquet", "conll", "hf"] | None = Field(
        None, description="Inferred from the file extension when omitted."
    )
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    validation_split: float = Field(
        0.1, gt=0, lt=1, description="Fraction held out (stratified) when no validation file is given."
    )
    max_length: int = Field(128, ge=8, description="Tokens per example; longer ones are truncated (default: "
                            "the task's, 128; generation 1024, cutting prompts, never answers).")
    max_train_rows: int | None = Field(None, ge=1, description="Use only the first N training rows.")
    seed: int = Field(42, description="Seed of the train/validation split.")
    cache_dir: str | None = Field(None, description="Tokenization cache; default ~/.cache/paretune.")
    augment: AugmentConfig | None = Field(None, description="On-the-fly token dropout/swap/mask of training "
                                          "batches (data/augment.py); off by default.")
    general_eval: str | None = Field(
        None, description="Generative runs: score the base and the tuned model on general instructions after "
        "training (forgetting in metrics.json and the model card): 'shipped' (40 built-in rows) or a FILE of "
        "generation rows; off when unset (docs/generation.md)."
    )
    knowledge: KnowledgeConfig | None = Field(
        None, description="Knowledge-graph triples (a file, or a section: triples, entities, form, mode, templates, "
        "questions) verbalised into training rows: statements for mlm or causal LM, questions for a generative "
        "run; added to the training rows (docs/kg.md)."
    )


MethodConfig = Annotated[Union[method_options_types()], Field(discriminator="name")]


class EarlyStoppingConfig(Section):
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0)


class TrainingConfig(Section):
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs when set.")
    lr: float | None = Field(
        None, gt=0, description="Peak learning rate; default scales with batch size (docs/training.md)."
    )
    weight_decay: float = Field(0.01, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    scheduler: Literal["linear", "cosine", "exponential", "constant"] = "linear"
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0, description="Overrides warmup_ratio when set.")
    min_lr_ratio: float = Field(0.01, gt=0, le=1, description="Exponential decay ends at lr * this.")
    batch_size: int | None = Field(
        None, ge=1, description="Fixed examples per batch (random order); set it to opt out of token budgets."
    )
    batch_tokens: int | Literal["auto"] | None = Field(
        "auto",
        description="Padded-token budget per length-bucketed batch; auto sizes it from the data "
        "(docs/training.md).",
    )
    eval_batch_size: int = Field(128, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."
    )
    eval_every: int | Literal["epoch"] = Field("epoch", description="Evaluate every N steps or each epoch.")
    save_every: int | Literal["epoch"] = Field("epoch", description="Checkpoint every N steps or each epoch.")
    keep_checkpoints: int = Field(1, ge=1, description="Newest checkpoints kept for resume.")
    metric: str | None = Field(None, description="Metric for best model / early stopping; task default. "
                               "Generative runs with eval_generate may name exact_match, rouge_l, structured_match.")
    eval_generate: int = Field(
        0, ge=0, description="Generative runs: each evaluation also answers this many validation rows by "
        "greedy generation and records exact_match, ROUGE-L and structured_match (0: off; docs/generation.md)."
    )
    early_stopping: EarlyStoppingConfig | None = None
    load_best: bool = Field(True, description="Save the best evaluated weights as the final model.")
    max_nan_steps: int = Field(5, ge=1, description="Consecutive non-finite losses before stopping.")
    finite_check: Literal["auto", "step", "deferred"] = Field(
        "auto", description="How NaN/inf losses are caught (engine/finite.py): step = on the host before each "
        "backward; deferred = the fused optimizer skips the step on the device, flags read every log_every "
        "steps (no per-step sync); auto = deferred on CUDA when the optimizer is fused, else step."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute each layer's activations in the backward pass instead of keeping them: less "
        "memory for longer contexts or bigger batches, about a third more compute (docs/training.md)."
    )
    chunked_loss: bool | Literal["auto"] = Field(
        "auto", description="Generative runs: compute the LM head and its cross-entropy a chunk of tokens at a "
        "time, so the logits are never held whole (engine/chunked_loss.py); auto = on for batches whose "
        "logits would exceed 64M values."
    )
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile (inductor) the model for training (engine/compile.py); auto = on CUDA "
        "for runs of at least 300 steps, off on CPU (docs/training.md)."
    )
    seed: int = 42
    log_every: int = Field(50, ge=1, description="Steps between log lines when stdout is not a terminal.")


class OutputConfig(Section):
    dir: str | None = Field(None, description="Run folder; default runs/<config name>-<time>.")
    overwrite: bool = Field(
        False, description="Replace an existing run folder (only a paretune run, and only once the new run finished)."
    )
    keep_checkpoints_after_run: bool = Field(
        False, description="Keep checkpoints/ (step checkpoints, optimizer state, best weights) after the run finished."
    )


class CostConfig(Section):
    """Which price turns device-hours into dollars (docs/cost.md); default: by detected device."""

    price: str | None = Field(
        None, description="Row of the price table by name, e.g. lambda-h100-sxm or aws-m7i.large."
    )
    usd_per_hour: float | None = Field(None, gt=0, description="Your own price per device-hour.")
    prices_file: str | None = Field(
        None, description="YAML price table whose rows are added before the packaged ones."
    )

    @model_validator(mode="after")
    def _one_price(self) -> "CostConfig":
        if self.price is not None and self.usd_per_hour is not None:
            raise ValueError("set cost.price (a table row) or cost.usd_per_hour, not both")
        return self


class TrackingConfig(Section):
    """Experiment tracking (docs/tracking.md): where a run's params, metrics and files are logged."""

    backends: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="Backends to log to: tensorboard, mlflow, wandb (offline)."
    )
    dir: str | None = Field(
        None, description="Folder for event files, the MLflow SQLite store and W&B offline runs; "
        "default the folder holding the run folder."
    )
    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI (server URL, sqlite:///file.db); default DIR/mlflow.db."
    )
    experiment: str | None = Field(None, description="MLflow experiment / W&B project; default the sweep or paretune.")
    run_name: str | None = Field(None, description="Name of the tracked run; default the run folder's name.")
    group: str | None = Field(None, description="Runs of one sweep share it (set by paretune sweep).")
    flush_every: int | None = Field(
        None, ge=1, description="Every step's loss and lr are logged; they are read from the device and "
        "sent every this many steps (one device sync each); default training.log_every."
    )


class Config(Section):
    model: ModelConfig = ModelConfig()
    task: TaskConfig = Field(default_factory=task_options)
    data: DataConfig = DataConfig()
    method: MethodConfig = Field(default_factory=lambda: method_options_types()[0]())
    training: TrainingConfig = TrainingConfig()
    output: OutputConfig = OutputConfig()
    cost: CostConfig = CostConfig()
    distributed: DistributedConfig = DistributedConfig()  # docs/distributed.md
    tracking: TrackingConfig = TrackingConfig()  # docs/tracking.md
    continual: ContinualConfig = ContinualConfig()  # read by train --from RUN (docs/continual.md)

    @model_validator(mode="before")
    @classmethod
    def _task_default_method(cls, data: Any) -> Any:
        """No `method:` section: the task's own default (LoRA for preference tuning, else full)."""
        if not isinstance(data, dict) or "method" in data:
            return data
        task = data.get("task")
        kind = task.get("type") if isinstance(task, dict) else getattr(task, "type", None)
        try:
            default = task_class(kind or default_task()).default_method
        except KeyError:
            return data  # the task section's own error names the unknown type
        return {**data, "method": {"name": default}}

    @model_validator(mode="before")
    @classmethod
    def _task_default_max_length(cls, data: Any) -> Any:
        """No data.max_length: the task's own (generation: 1024, not an encoder's 128)."""
        if not isinstance(data, dict):
            return data
        section = data.get("data") or {}
        if not isinstance(section, dict) or "max_length" in section:
            return data
        task = data.get("task")
        kind = task.get("type") if isinstance(task, dict) else getattr(task, "type", None)
        try:
            default = task_class(kind or default_task()).default_max_length
        except KeyError:
            return data  # the task section's own error names the unknown type
        return {**data, "data": {**section, "max_length": default}}

    @model_validator(mode="after")
    def _one_batching(self) -> "Config":
        t = self.training
        if t.batch_size is not None and t.batch_tokens not in (None, "auto"):
            raise ValueError("set training.batch_size or training.batch_tokens, not both")
        if t.batch_tokens is not None and t.batch_tokens != "auto" and t.batch_tokens < 16:
            raise ValueError("training.batch_tokens must be at least 16")
        return self

    @model_validator(mode="after")
    def _needs_training_data(self) -> "Config":
        if self.data.train is None:
            raise ValueError("data.train is required: the file to fine-tune on")
        return self


def _rebuild_task_section() -> None:
    """A task registered (or removed) after import: the `task:` union takes it in."""
    global TaskConfig
    TaskConfig = task_config_type()
    Config.__pydantic_fields__["task"] = FieldInfo.from_annotated_attribute(
        TaskConfig, Field(default_factory=task_options))
    Config.model_rebuild(force=True)


on_registry_change(_rebuild_task_section)

"""Task metrics during training: `training.eval_generate: N` makes every evaluation of a generative
run also answer the first N validation rows (those with a reference answer) by greedy generation,
so metrics.jsonl holds exact match, ROUGE-L and the structured match next to perplexity, and
`training.metric` may name one of them: the best checkpoint and early stopping then follow the
task score.

The answers come from the task's own answer path (tasks/generation.py on the decoding engine),
the one the score after training and `paretune eval` use, so the figures are comparable; they
are only over fewer rows. Every process generates the same rows with the same greedy decoding,
so every process takes the same decisions without gathering anything.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from paretune.config.schema import TrainingConfig
from paretune.data.examples import Example
from paretune.tasks.base import Task

# What the generated answers are scored by (evaluation/generation_metrics.py); the ones a run
# reports depend on the installed scorers (rouge_l, bleu, chrf) and on task.match.
GENERATED_METRICS = ("exact_match", "contains", "rouge_l", "bleu", "chrf", "structured_match",
                     "item_precision", "item_recall", "item_f1", "json_parse_rate")


def generates_during_training(config: TrainingConfig, task: Task) -> bool:
    return config.eval_generate > 0 and task.generates


def metric_names(config: TrainingConfig, task: Task) -> tuple[str, ...]:
    """The generated-answer metrics `training.metric` may name for this run (none without eval_generate)."""
    return GENERATED_METRICS if generates_during_training(config, task) else ()


def generation_scorer(config: TrainingConfig, task: Task, examples: list[Example] | None, tokenizer,
                      device: torch.device) -> Callable[[torch.nn.Module], dict[str, Any]] | None:
    """model -> metrics of its greedy answers to the first `eval_generate` validation rows with a
    reference (None: nothing to generate for this run)."""
    if not generates_during_training(config, task) or not examples:
        return None
    scored = [ex for ex in examples if ex.label is not None][: config.eval_generate]
    if not scored:
        return None

    def score(model: torch.nn.Module) -> dict[str, Any]:
        return task.answer_metrics(model, tokenizer, scored, device)

    return score

"""The student: a model from a path (a smaller pretrained model), or a subset of the teacher's layers.

    --student teacher:layers=0,2,4     the teacher's trained model with only these blocks
    --student teacher:layers=every:2   (same specs as compress --keep-layers)
    --student path/or/hub-id           a pretrained body with a fresh task head

The student reads the same token ids as the teacher, so its tokenizer must have the same
vocabulary (a model from the same family: MiniLM for BERT, DistilRoBERTa for RoBERTa, ...); an
image student reads the same pixels, so it must expect the same size, mean and std.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from paretune.compression.drop_layers import keep_layers, parse_layers
from paretune.compression.parent import Parent
from paretune.config.schema import ModelConfig
from paretune.errors import ParetuneError
from paretune.methods.layers import transformer_blocks
from paretune.models import load_model, load_tokenizer
from paretune.tasks.base import Task

TEACHER_PREFIX = "teacher:"


@dataclass
class StudentPlan:
    source: str  # config.model.name_or_path of the distilled run (its tokenizer comes from here)
    build: Callable[[Task], torch.nn.Module]
    teacher_layers: list[int] | None = None  # teacher block each student block starts as
    settings: dict[str, Any] = field(default_factory=dict)


def plan_student(spec: str, teacher: Parent, teacher_model: torch.nn.Module) -> StudentPlan:
    if spec.startswith(TEACHER_PREFIX):
        return _from_teacher(spec, teacher, teacher_model)
    # Trust as the caller gave it for the teacher run (--trust-remote-code), not the teacher's config.yaml.
    model_config = ModelConfig(name_or_path=spec, trust_remote_code=teacher.trust_remote_code)
    # What stands for the tokenizer in the task: an image student's preprocessing (size, mean, std).
    if load_tokenizer(model_config, task=teacher.config.task).get_vocab() != teacher.tokenizer.get_vocab():
        raise ParetuneError(f"student '{spec}' reads its inputs differently from the teacher (a text model's "
                            "vocabulary; an image model's size, mean and std): distillation feeds both the same "
                            "inputs; choose a student of the same family (or set task.image_size), or "
                            "'teacher:layers=...'")
    return StudentPlan(source=spec, build=lambda task: load_model(model_config, task),
                       settings={"student": spec, "init": "pretrained"})


def _from_teacher(spec: str, teacher: Parent, teacher_model: torch.nn.Module) -> StudentPlan:
    key, _, value = spec[len(TEACHER_PREFIX):].partition("=")
    if key.strip() != "layers" or not value.strip():
        raise ParetuneError(f"--student '{spec}': write teacher:layers=0,2,4 (or first:N, every:K)")
    kept = parse_layers(value, len(transformer_blocks(teacher_model)))

    def build(task: Task) -> torch.nn.Module:
        return keep_layers(teacher.load_model(), kept)  # a fresh copy: the teacher stays whole

    return StudentPlan(source=str(teacher.run.model_dir.resolve()), build=build, teacher_layers=kept,
                       settings={"student": spec, "init": "teacher layers", "layers": kept})


def layer_pairs(student_layers: int, teacher_layers: int, kept: list[int] | None) -> list[tuple[int, int]]:
    """(student, teacher) indices into hidden_states (0 = embeddings) whose states are matched.

    A student made of teacher blocks matches each block with the one it was copied from;
    otherwise student block i matches teacher block round((i + 1) * T / S) - 1, spread evenly.
    """
    if kept is not None:
        return [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(kept)]
    return [(0, 0)] + [(i + 1, round((i + 1) * teacher_layers / student_layers)) for i in range(student_layers)]

"""`distill_run`: train a student on a finished run's data against the run's model as teacher.

Training goes through `paretune.runner.finetune` with a `Seam`: the runner builds the student
(`StudentPlan.build`), wraps it with the teacher for training (loss.py) and saves the student
alone, so checkpoints, evaluation, early stopping and cost metering are the train command's own.
The new run folder is then finished like a compressed run (run_writer.finish): compared with the
teacher on the same machine, with a "compression" entry whose method is "distill".
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from paretune.compression.parent import Parent
from paretune.compression.run_writer import BenchSettings, child_config, finish, lineage_cost
from paretune.config import Config, config_from_dict
from paretune.distillation.loss import DistillationModel, DistillationTask, kl_to_teacher
from paretune.distillation.options import DistillOptions
from paretune.distillation.student import StudentPlan, plan_student
from paretune.errors import ParetuneError
from paretune.models import count_parameters
from paretune.run_folder import RunFolder
from paretune.runner import Seam, finetune
from paretune.stored import form_of

log = logging.getLogger("paretune")


def student_config(teacher: Parent, plan: StudentPlan, options: DistillOptions, output: Path | None,
                   overrides: list[str] | None, overwrite: bool) -> Config:
    from paretune.config.loading import apply_overrides

    raw = child_config(teacher, output, "distilled", overwrite).model_dump(mode="json")
    raw["model"]["name_or_path"] = plan.source
    # Every weight: a fresh or narrowed student's token table has not learnt anything yet.
    raw["method"] = {"name": "full", "freeze_token_embeddings": False}
    raw["training"].update({"epochs": options.epochs, "max_steps": None})
    return config_from_dict(apply_overrides(raw, overrides or []))


def distill_run(teacher_dir: str | Path, student: str, options: DistillOptions | None = None, *,
                output: str | Path | None = None, overrides: list[str] | None = None,
                bench: BenchSettings | None = None, overwrite: bool = False,
                trust_remote_code: bool = False) -> Path:
    """Distill finished run `teacher_dir` into `student`; returns the new run folder.

    `trust_remote_code` as in `Predictor.load`, for the teacher run and a `student` model alike.
    """
    options = options or DistillOptions()
    teacher = Parent.open(teacher_dir, trust_remote_code)
    teacher_model = teacher.load_model()
    plan = plan_student(student, teacher, teacher_model)
    config = student_config(teacher, plan, options, Path(output) if output else None, overrides, overwrite)
    checks: dict = {}

    def start(task):
        if task.label_names != teacher.info["labels"]:
            raise ParetuneError(f"the data gives labels {task.label_names}, the teacher predicts "
                                f"{teacher.info['labels']}: distill on the teacher's data settings")
        model = plan.build(task)
        checks["kl_to_teacher_before"] = _kl(model, teacher_model, teacher, options)
        return model

    def wrap(model, task):
        wrapper = DistillationModel(model, teacher_model, options, plan.teacher_layers)
        return wrapper, DistillationTask(task, wrapper)

    trained = finetune(config, seam=Seam(model=start, wrap=wrap, unwrap=lambda wrapper: wrapper.student))
    run = RunFolder(trained.path)
    student_model = _reload(run.path, teacher.trust_remote_code)
    checks["kl_to_teacher_after"] = _kl(student_model, teacher_model, teacher, options)
    student_params = count_parameters(student_model)["total_params"]
    teacher_params = count_parameters(teacher_model)["total_params"]
    checks.update({"student_params": student_params, "teacher_params": teacher_params,
                   "param_ratio": round(student_params / teacher_params, 4)})
    entry = {"parent": str(teacher.path), "method": "distill",
             "settings": {**plan.settings, **options.model_dump()}, "checks": checks,
             "form": {"name": form_of(run.model_dir).name}}
    finish(run, teacher, entry, trained.metrics, lineage_cost(trained.cost, teacher), bench or BenchSettings())
    log.info("wrote %s", run.path)
    return run.path


def _kl(student: torch.nn.Module, teacher_model: torch.nn.Module, teacher: Parent, options: DistillOptions) -> float:
    """Soft loss against the teacher on the validation set, at the distillation temperature."""
    data = teacher.data
    device = next(teacher_model.parameters()).device
    return kl_to_teacher(student.to(device), teacher_model, data.task, data.validation.encoded, teacher.pad_id,
                         options.temperature)


def _reload(run_dir: Path, trust_remote_code: bool) -> torch.nn.Module:
    from paretune.predictor import Predictor

    return Predictor.load(run_dir, device="cpu", trust_remote_code=trust_remote_code).model

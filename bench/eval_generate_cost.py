"""What training.eval_generate and data.general_eval cost, against an epoch of training.

    OMP_NUM_THREADS=1 python bench/eval_generate_cost.py --eval-generate 32 --steps 3

Trains examples/chat.yaml (LoRA on SmolLM2-135M-Instruct, 400 chat rows) for a few steps with an
evaluation after each, timing the greedy answers inside each evaluation and the two passes of the
forgetting check (`data.general_eval: shipped`) in the same process, under the same load, so the
ratios hold on a shared machine. An epoch's training time is the measured seconds per step times
the epoch's steps. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import paretune
from paretune.evaluation import general_eval
from paretune.tasks.generation import GenerationTask

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chat.yaml"


def timed(owner, name: str, seconds: list[float]) -> None:
    """Wrap owner.name so each call's duration is appended to `seconds`."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-generate", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the example's")
    args = parser.parse_args()
    generation_s: list[float] = []
    general_s: list[float] = []
    timed(GenerationTask, "answer_metrics", generation_s)
    timed(general_eval, "score", general_s)
    with tempfile.TemporaryDirectory() as folder:
        overrides = [f"training.max_steps={args.steps}", "training.eval_every=1",
                     f"training.eval_generate={args.eval_generate}", "task.generate_rows=0",
                     "data.general_eval=shipped", f"output.dir={folder}/run"]
        if args.max_new_tokens:
            overrides.append(f"task.max_new_tokens={args.max_new_tokens}")
        run = paretune.finetune(EXAMPLE, overrides)
        lines = (run.path / "metrics.jsonl").read_text().splitlines()
    exact = [json.loads(line)["validation"].get("exact_match") for line in lines if '"validation"' in line]
    step_s = run.cost["phases_s"]["train_s"] / run.metrics["steps"]
    epoch_steps = run.metrics["steps"] / run.metrics["epochs"]
    epoch_s = step_s * epoch_steps
    per_eval = sum(generation_s) / max(len(generation_s), 1)
    print(json.dumps({
        "eval_generate": args.eval_generate, "steps": run.metrics["steps"], "train_s_per_step": round(step_s, 2),
        "epoch_steps": round(epoch_steps, 1), "epoch_train_s": round(epoch_s, 1),
        "generate_s_per_evaluation": round(per_eval, 2),
        "eval_generate_share_of_epoch": round(per_eval / epoch_s, 4),
        "general_eval_s": [round(s, 2) for s in general_s],
        "general_eval_share_of_epoch": round(sum(general_s) / epoch_s, 4),
        "forgetting": run.metrics.get("forgetting"),
        "exact_match_per_evaluation": exact,
    }, indent=1))


if __name__ == "__main__":
    main()

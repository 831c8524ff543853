"""The forgetting check of generative runs (`data.general_eval`): the model as training starts and
the tuned model answer the same general instructions, and the difference goes into metrics.json
(`forgetting`) and the model card.

The set is a file the user gives (any generation row shape: prompt/completion, messages, ...) or
`shipped`: about 40 general instructions with one right short answer each (arithmetic, capitals,
spelling, following a format), written by `shipped_rows` below, so nothing is copied from a
dataset. Answers are greedy and only as long as the longest reference needs (plus a little), so
the check costs two short generation passes over a few rows.

The base score is taken before the first step, from the very model training starts with (for
peft methods with the adapter disabled: prompt tuning's virtual tokens are not the base model),
so no second copy of the model is loaded; it is kept beside the checkpoints, so a resumed run
(whose weights at start are a checkpoint's) reads it back.
"""
from __future__ import annotations

import json
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretune.data.chat_rows import read_generation_examples
from paretune.data.examples import Example
from paretune.errors import ConfigError, DataError, DataProblem
from paretune.evaluation.generation_metrics import generation_metrics
from paretune.tasks.decoding import DecodeSettings

SHIPPED = "shipped"
# Only a resumed run needs it, so it lives with the checkpoints (removed after the run; the
# figures are in metrics.json then).
BASE_FILE = "checkpoints/general_eval_base.json"
SCORES = ("exact_match", "contains", "rouge_l")

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
            "Egypt": "Cairo", "Canada": "Ottawa", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo"}
WORDS = ["apple", "river", "garden", "pencil", "window", "planet", "silver", "orange", "butter", "candle"]


def shipped_rows(seed: int = 0) -> list[dict[str, str]]:
    """40 prompt/completion rows, the same for every run (a fixed seed), ten of each kind."""
    rng = random.Random(seed)
    rows = []
    for _ in range(5):
        a, b = rng.randint(2, 49), rng.randint(2, 49)
        rows.append({"prompt": f"What is {a} plus {b}? Answer with the number only.", "completion": str(a + b)})
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        rows.append({"prompt": f"What is {a} times {b}? Answer with the number only.", "completion": str(a * b)})
    for country, capital in CAPITALS.items():
        rows.append({"prompt": f"What is the capital of {country}? Answer with the city name only.",
                     "completion": capital})
    for word in WORDS:
        rows.append({"prompt": f"Write the word \"{word}\" backwards. Answer with that word only.",
                     "completion": word[::-1]})
    for word in rng.sample(WORDS, 5):
        rows.append({"prompt": f"Repeat the word \"{word}\" three times, separated by single spaces, "
                               "and nothing else.", "completion": " ".join([word] * 3)})
    for a, b in [(7, 3), (2, 9), (15, 4), (6, 6), (1, 8)]:
        rows.append({"prompt": f"Is {a} greater than {b}? Answer yes or no.", "completion": "yes" if a > b else "no"})
    return rows


def general_examples(setting: str) -> tuple[str, list[Example]]:
    """(the set's name for the report, its rows with a reference answer) for `data.general_eval`."""
    if setting == SHIPPED:
        return SHIPPED, [Example([{"role": "user", "content": r["prompt"]}], r["completion"], row)
                         for row, r in enumerate(shipped_rows(), 1)]
    examples = [ex for ex in read_generation_examples(Path(setting)) if ex.label is not None]
    if not examples:
        raise DataError(DataProblem(setting, "data.general_eval: no row has a reference answer to score"))
    return str(setting), examples


def score(task, model, tokenizer, examples: list[Example], device) -> dict[str, float]:
    """Exact match, contains and ROUGE-L of greedy answers, at most as long as the longest
    reference (in tokens) plus 4. Not capped by the task's max_new_tokens: a one-word task (SST-2
    at 4 tokens) would cut the set's longer answers short for base and tuned alike."""
    longest = max(len(tokenizer(str(ex.label), add_special_tokens=False)["input_ids"]) for ex in examples)
    settings = DecodeSettings(max_new_tokens=longest + 4)
    answers = task.answer(model, tokenizer, examples, device, settings)
    metrics = generation_metrics(answers, [str(ex.label) for ex in examples])
    return {k: metrics[k] for k in SCORES if k in metrics}


@dataclass
class GeneralEval:
    """The set and the base model's scores on it; `compare` scores the tuned model."""

    name: str
    examples: list[Example]
    base: dict[str, float]

    def compare(self, task, model, tokenizer, device) -> dict[str, Any]:
        tuned = score(task, model, tokenizer, self.examples, device)
        change = {k: round(tuned[k] - self.base[k], 6) for k in tuned if k in self.base}
        return {"set": self.name, "rows": len(self.examples), "base": self.base, "tuned": tuned, "change": change}


def read_general_set(setting: str | None, task) -> tuple[str, list[Example]] | None:
    """The set `data.general_eval` names, read before the run folder exists (a bad file must not
    leave a folder that blocks the corrected rerun); None when the check is off."""
    if not setting:
        return None
    if not task.generates:
        raise ConfigError(f"data.general_eval scores generated answers; the {task.name} task does not generate")
    return general_examples(setting)


def start_general_eval(general_set: tuple[str, list[Example]] | None, task, model, tokenizer, device,
                       run_path: Path, main_process: bool = True) -> GeneralEval | None:
    """The set and its base scores (read back from the run folder when this run already took them)."""
    if general_set is None:
        return None
    name, examples = general_set
    saved = run_path / BASE_FILE
    if saved.is_file():
        recorded = json.loads(saved.read_text(encoding="utf-8"))
        if recorded.get("set") == name and recorded.get("rows") == len(examples):
            return GeneralEval(name, examples, recorded["base"])
    with _adapter_disabled(model):
        base = score(task, model, tokenizer, examples, device)
    if main_process:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"set": name, "rows": len(examples), "base": base}, indent=2), encoding="utf-8")
    return GeneralEval(name, examples, base)


def _adapter_disabled(model):
    """peft's context that runs the base model alone; other models already are the base at step 0."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if callable(disable) and hasattr(model, "peft_config") else nullcontext()


def card_lines(forgetting: dict[str, Any] | None) -> list[str]:
    """The model card's lines: base -> tuned on the general set."""
    if not forgetting:
        return []
    scores = ", ".join(f"{k} {forgetting['base'][k]:.3f} -> {forgetting['tuned'][k]:.3f} ({v:+.3f})"
                       for k, v in forgetting["change"].items())
    return [f"- general instructions ({forgetting['set']}, {forgetting['rows']} rows), base -> tuned: {scores}"]

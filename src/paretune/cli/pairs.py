"""`paretune pairs RUN --data FILE --output pairs.jsonl`: preference pairs from a run's own mistakes.

Each prompt of FILE (rows with a reference answer: prompt + completion, messages, instruction +
output) is answered K times by the run (`--samples`, sampled at `--temperature`), each answer is
scored against the reference with the task's match (`--metric`: exact_match, json-list,
regex:PATTERN, json:FIELD), and a pair is written with `chosen` = the reference (or, with
`--chosen sample`, a right answer of the run's own when it gave one) and `rejected` = the first wrong
answer. Prompts the run always answers right teach nothing and are skipped.

Every prompt's samples and scores go to OUTPUT.samples.jsonl as they are made, through the
resumable writer `paretune generate` uses: an interrupted job run again continues after the last
finished prompt (same data, run and options). OUTPUT is written from it at the end.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from paretune.errors import ParetuneError
from paretune.remote_code import FLAG_HELP

# What the samples depend on: a partial written with other options is started over.
STAMPED = ("samples", "temperature", "top_p", "max_new_tokens", "seed", "metric")


def pairs(
    run: Path = typer.Argument(..., help="Run folder of a generative run (generation or preference)."),
    data: Path = typer.Option(..., "--data", help="Prompts with reference answers (jsonl, csv, parquet: prompt + "
                                                  "completion, messages, or instruction + output)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the pairs (JSON lines)."),
    samples: int = typer.Option(4, "--samples", "-k", min=1, help="Answers sampled per prompt."),
    temperature: float = typer.Option(1.0, min=0.0, help="Sampling temperature (0: greedy, one distinct answer)."),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0, help="Nucleus sampling: smallest token set with this mass."),
    metric: Optional[str] = typer.Option(None, help="How an answer is judged right: exact_match, json-list, "
                                                    "regex:PATTERN or json:FIELD (default: the run's task.match, "
                                                    "else exact_match)."),
    chosen: str = typer.Option("reference", help="reference: the reference answer is chosen; sample: the run's "
                                                 "own right answer when it gave one, else the reference."),
    max_new_tokens: Optional[int] = typer.Option(None, min=1, help="Most tokens per answer (default: the run's "
                                                                   "task.max_new_tokens)."),
    seed: int = typer.Option(0, help="Seed of the first sample (sample k uses seed + k)."),
    batch_size: int = typer.Option(16, min=1, help="Prompts generated together."),
    restart: bool = typer.Option(False, "--restart", help="Ignore a partial output left by an earlier run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT even if paretune did not write it."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
) -> None:
    """Sample answers from a run, score them, and write chosen/rejected pairs where it was wrong."""
    from paretune.data.chat_rows import read_generation_examples
    from paretune.evaluation.generation_metrics import check_match
    from paretune.logs import setup_logging
    from paretune.predictor import Predictor
    from paretune.resumable_output import check_output
    from paretune.tasks.decoding import DecodeSettings

    if chosen not in ("reference", "sample"):
        raise ParetuneError(f"--chosen {chosen}: use reference or sample")
    if metric not in (None, "exact_match"):
        try:
            check_match(metric)
        except ValueError as err:
            raise ParetuneError(f"--metric: {err} (or exact_match)") from None
    samples_file = output.with_name(output.name + ".samples.jsonl")
    for file in (output, samples_file):
        check_output(data, file, overwrite)
    examples = [ex for ex in read_generation_examples(data) if ex.label is not None]
    if not examples:
        raise ParetuneError(f"{data}: no row has a reference answer (completion, output or an assistant turn)")
    setup_logging()
    predictor = Predictor.load(run, trust_remote_code=trust_remote_code)
    metric = metric or getattr(predictor.task.config, "match", None) or "exact_match"
    settings = DecodeSettings(max_new_tokens or getattr(predictor.task.config, "max_new_tokens", 64),
                              temperature, top_p, seed=seed, batch_size=batch_size)
    options = {"samples": samples, "temperature": temperature, "top_p": top_p, "seed": seed, "metric": metric,
               "max_new_tokens": settings.max_new_tokens}
    rows = _sample_file(predictor, examples, data, samples_file, settings, options, restart)
    counts = _write_pairs(rows, output, chosen)
    print(f"{counts['prompts']} prompts: {counts['pairs']} pairs written to {output}, {counts['always_right']} "
          f"always answered right (skipped), {counts['never_right']} never right; samples in {samples_file}")


def _sample_file(predictor, examples, data: Path, samples_file: Path, settings, options: dict,
                 restart: bool, chunk_rows: int = 32) -> list[dict]:
    """Every prompt's samples and their scores, resumed from an interrupted run when it matches."""
    from paretune.generate_text import answer
    from paretune.resumable_output import ResumableOutput, exit_on_sigterm, input_stamp

    stamp = {**input_stamp(data), "run": str(Path(predictor.run_dir).resolve()), "options": options}
    with ResumableOutput(samples_file, stamp, rows=len(examples), restart=restart,
                         row_of=lambda k: examples[k - 1].row, command="paretune pairs") as out, \
            exit_on_sigterm(out.partial):
        for start in range(out.done, len(examples), chunk_rows):
            chunk = examples[start:start + chunk_rows]
            answers = [answer(predictor, chunk, replace(settings, seed=settings.seed + k))
                       for k in range(options["samples"])]
            out.write(_scored(ex, [a[j] for a in answers], options["metric"]) for j, ex in enumerate(chunk))
        out.finish()
    return [json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _scored(example, answers: list[str], metric: str) -> dict:
    from paretune.evaluation.generation_metrics import normalise, structured_equal

    reference = str(example.label)
    right = [normalise(a) == normalise(reference) if metric == "exact_match" else
             structured_equal(a, reference, metric) for a in answers]
    prompt = list(example.text[:-1]) if example.text[-1]["role"] == "assistant" else list(example.text)
    return {"row": example.row, "prompt": prompt, "reference": reference, "samples": answers, "right": right}


def _write_pairs(rows: list[dict], output: Path, chosen: str) -> dict[str, int]:
    """The pairs file (atomically) from the scored samples, and what was counted."""
    from paretune.run_folder import atomic_write

    counts = {"prompts": len(rows), "pairs": 0, "always_right": 0, "never_right": 0}
    lines = []
    for row in rows:
        wrong = [a for a, ok in zip(row["samples"], row["right"]) if not ok and a.strip() != row["reference"].strip()]
        good = [a for a, ok in zip(row["samples"], row["right"]) if ok]
        counts["never_right"] += not good
        if not wrong:
            counts["always_right"] += all(row["right"])
            continue
        prompt = row["prompt"]
        if len(prompt) == 1 and prompt[0]["role"] == "user":
            prompt = prompt[0]["content"]
        best = good[0] if chosen == "sample" and good else row["reference"]
        lines.append(json.dumps({"row": row["row"], "prompt": prompt, "chosen": best, "rejected": wrong[0]},
                                ensure_ascii=False) + "\n")
    counts["pairs"] = len(lines)
    atomic_write(output, "".join(lines))
    return counts


def register(app: typer.Typer) -> None:
    app.command("pairs")(pairs)

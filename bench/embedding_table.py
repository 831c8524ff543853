"""What training the token-embedding table costs per epoch: interleaved step timing (issue 17).

    python bench/embedding_table.py [--rows 2000] [--variants sdpa,train sdpa,freeze eager,freeze]

Builds one packaged-MiniLM classifier per variant (attention implementation, token table trained
or frozen), then runs the same SST-2 batches (paretune's 256-token plan, seed 0) through all of
them step by step in turn: forward, backward, norm clip, fused AdamW. Interleaving puts every
variant on the same machine state, which on a shared VM moves more between runs than these
differences. Prints each variant's summed step time for one epoch. Not a timed test.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench_data import SHARED, read_tsv


def build(variant: str, path: str):
    from transformers import AutoModelForSequenceClassification

    attention, table = variant.split(",")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, attn_implementation=attention)
    model.get_input_embeddings().weight.requires_grad_(table != "freeze")
    model.train()
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", default=["sdpa,train", "sdpa,freeze", "eager,freeze"])
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from paretune.data.batching import BatchPlan
    from paretune.models import default_model_path

    path = str(default_model_path())
    rows = read_tsv(SHARED / "sst2" / "train.tsv")[: args.rows]
    ids = AutoTokenizer.from_pretrained(path)([t for t, _ in rows], truncation=True, max_length=128)["input_ids"]
    labels = torch.tensor([int(y) for _, y in rows])
    plan = list(BatchPlan(np.array([len(s) for s in ids]), batch_tokens=256, shuffle=True, seed=0))
    models = [build(v, path) for v in args.variants]
    seconds = [0.0] * len(models)
    for batch in plan:
        width = max(len(ids[i]) for i in batch)
        tokens = torch.zeros(len(batch), width, dtype=torch.long)
        for j, i in enumerate(batch):
            tokens[j, : len(ids[i])] = torch.tensor(ids[i])
        mask = (tokens != 0).long()
        for k, (model, optimizer) in enumerate(models):
            started = time.perf_counter()
            model(input_ids=tokens, attention_mask=mask, labels=labels[batch]).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds[k] += time.perf_counter() - started
    print(f"{len(plan)} steps, {sum(len(s) for s in ids):,} tokens")
    for variant, s in zip(args.variants, seconds):
        print(f"{variant:>14}: {s:6.2f} s per epoch ({s / seconds[0]:.2f} of {args.variants[0]})")


if __name__ == "__main__":
    main()

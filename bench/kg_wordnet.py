"""Link prediction on the WordNet graph: paretune's MiniLM bi-encoder against PyKEEN TransE and
RotatE, same split, same training-time budget, filtered MRR and Hits@1/3/10 on test (issue 32).

    pip install -e ".[kg]" -c constraints.txt
    python examples/make_wordnet_kg.py --out runs/data/wordnet      # once (Debian's wordnet-base)
    python bench/kg_wordnet.py --data runs/data/wordnet --budget 1800 --out runs/bench-kg
    python bench/kg_wordnet.py --data runs/data/wordnet --smoke     # wiring only: a small subgraph, seconds each

Each model trains for `--budget` seconds of CPU time per thread (process CPU time / `--threads`,
so a neighbour on the machine does not shrink anyone's budget) on the same `--threads` threads,
one after the other; evaluation is outside the budget and timed apart. paretune: its CPU seconds
per step come from a probe run on a small subgraph (same batch and lengths; its training wall time
at the share of a CPU the probe process got), then `training.max_steps` = budget / step time. PyKEEN: sLCWA training with its
default negative sampler, one epoch at a time until the budget is spent. Both are scored by the
same protocol: each test triple ranked in both directions against every entity, the other known
triples (train, validation, test) filtered out, ties counted half (PyKEEN's "realistic" rank).

Writes OUT/results.json; copy the figures with the command line into bench/RESULTS.md.
Published WN18RR anchors (not this split): RotatE MRR 0.476, SimKGC (BERT-base) 0.671.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch


def read_tsv(path: Path) -> list[tuple[str, ...]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [tuple(line.split("\t")) for line in lines if line]


def subgraph(data: Path, out: Path, entities: int, held_out: int, seed: int = 0) -> Path:
    """A smaller graph for smoke runs and the step-time probe: the entities of `held_out` drawn
    validation and test triples, grown along training triples to about `entities`, and every
    triple among them."""
    rng = random.Random(seed)
    train = read_tsv(data / "train.tsv")
    rng.shuffle(train)
    held = {role: rng.sample(read_tsv(data / f"{role}.tsv"), held_out) for role in ("validation", "test")}
    kept = {e for rows in held.values() for h, _, t in rows for e in (h, t)}
    while len(kept) < entities:
        grown = len(kept)
        for head, _, tail in train:
            if (head in kept) != (tail in kept) and len(kept) < entities:
                kept |= {head, tail}
        if len(kept) == grown:
            break
    out.mkdir(parents=True, exist_ok=True)
    rows = {"train": [t for t in train if t[0] in kept and t[2] in kept]}
    relations = {r for _, r, _ in rows["train"]}
    seen = {e for h, _, t in rows["train"] for e in (h, t)}
    for role, triples in held.items():
        rows[role] = [t for t in triples if t[0] in seen and t[2] in seen and t[1] in relations and t not in rows["train"]]
    for role, triples in rows.items():
        (out / f"{role}.tsv").write_text("head\trelation\ttail\n" + "".join("\t".join(t) + "\n" for t in triples))
    texts = dict(read_tsv(data / "entities.tsv"))
    (out / "entities.tsv").write_text("id\ttext\n" + "".join(f"{e}\t{texts[e]}\n" for e in sorted(seen)))
    return out


# --- paretune -----------------------------------------------------------------------------------
def paretune_config(data: Path, out: Path, args, max_steps: int, test: bool = True) -> dict:
    return {
        "task": {"type": "kg-completion"},  # the packaged MiniLM is the default model
        "data": {"train": str(data / "train.tsv"), "validation": str(data / "validation.tsv"),
                 **({"test": str(data / "test.tsv")} if test else {}), "max_length": args.max_length},
        "training": {"max_steps": max_steps, "batch_size": args.batch, "lr": args.lr, "seed": 0,
                     "eval_every": 10**9, "save_every": 10**9, "load_best": False, "warmup_ratio": 0.05},
        "output": {"dir": str(out)},
    }


def run_paretune(data: Path, work: Path, args) -> dict:
    import paretune

    probe_data = subgraph(data, work / "probe-graph", entities=500, held_out=5)
    wall, cpu = time.perf_counter(), time.process_time()
    probe = paretune.finetune(paretune_config(probe_data, work / "paretune-probe", args, args.probe_steps, test=False))
    # CPU seconds per step: the probe's training wall time at the share of a CPU the probe got.
    share = (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9) / args.threads
    step_s = probe.cost["phases_s"]["train_s"] * min(share, 1.0) / args.probe_steps
    steps = max(1, int(args.budget / step_s))
    started = time.perf_counter()
    run = paretune.finetune(paretune_config(data, work / "paretune", args, steps))
    test = run.metrics["test"]
    return {"model": "paretune MiniLM bi-encoder", "steps": steps, "probe_step_s": round(step_s, 3),
            "train_s": run.cost["phases_s"]["train_s"], "wall_s": round(time.perf_counter() - started, 1),
            "usd": run.cost.get("usd"), **{k: test[k] for k in ("mrr", "hits@1", "hits@3", "hits@10", "mean_rank")}}


# --- PyKEEN -------------------------------------------------------------------------------------
def run_pykeen(name: str, data: Path, args) -> dict:
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import RotatE, TransE
    from pykeen.training import SLCWATrainingLoop
    from pykeen.triples import TriplesFactory

    entities = [e for e, _ in read_tsv(data / "entities.tsv")]
    parts = {role: np.array(read_tsv(data / f"{role}.tsv"), dtype=str) for role in ("train", "validation", "test")}
    entity_to_id = {e: i for i, e in enumerate(entities)}
    relation_to_id = {r: i for i, r in enumerate(sorted(set(parts["train"][:, 1])))}
    factories = {role: TriplesFactory.from_labeled_triples(rows, entity_to_id=entity_to_id,
                                                            relation_to_id=relation_to_id)
                 for role, rows in parts.items()}
    torch.manual_seed(0)
    kind = {"TransE": TransE, "RotatE": RotatE}[name]
    model = kind(triples_factory=factories["train"], embedding_dim=args.dim, random_seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.kge_lr)
    loop = SLCWATrainingLoop(model=model, triples_factory=factories["train"], optimizer=optimizer)
    spent, epochs = 0.0, 0
    while spent < args.budget:  # CPU seconds: a neighbour on the machine does not shrink the budget
        started = time.process_time()
        loop.train(triples_factory=factories["train"], num_epochs=epochs + 1, batch_size=args.kge_batch,
                   continue_training=epochs > 0, use_tqdm=False)
        spent += (time.process_time() - started) / args.threads
        epochs += 1
    started = time.perf_counter()
    filters = [factories["train"].mapped_triples, factories["validation"].mapped_triples]
    result = RankBasedEvaluator().evaluate(model, factories["test"].mapped_triples, batch_size=256,
                                           additional_filter_triples=filters, use_tqdm=False)
    metric = lambda key: float(result.get_metric(f"both.realistic.{key}"))  # noqa: E731
    return {"model": f"PyKEEN {name}", "epochs": epochs, "train_s": round(spent, 1),
            "eval_s": round(time.perf_counter() - started, 1), "mrr": metric("inverse_harmonic_mean_rank"),
            **{f"hits@{k}": metric(f"hits_at_{k}") for k in (1, 3, 10)}, "mean_rank": metric("arithmetic_mean_rank")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/data/wordnet"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-kg"))
    parser.add_argument("--budget", type=float, default=1800, help="training seconds per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", default="paretune,TransE,RotatE")
    parser.add_argument("--batch", type=int, default=64, help="paretune triples per batch (in-batch negatives)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--probe-steps", type=int, default=5)
    parser.add_argument("--dim", type=int, default=256, help="PyKEEN embedding dimension")
    parser.add_argument("--kge-lr", type=float, default=1e-3)
    parser.add_argument("--kge-batch", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="a 300-entity subgraph, 20 s budgets, 2-step probe")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = args.data
    if args.smoke:
        data = subgraph(args.data, args.out / "smoke-graph", entities=300, held_out=20)
        args.budget, args.probe_steps, args.batch = 20, 2, 16
    results = {"command": "python bench/kg_wordnet.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("smoke",)) + (" --smoke" if args.smoke else ""),
        "threads": args.threads, "budget_s": args.budget, "torch": torch.__version__, "models": []}
    for name in args.models.split(","):
        row = run_paretune(data, args.out, args) if name == "paretune" else run_pykeen(name, data, args)
        print(json.dumps(row))
        results["models"].append(row)
    rotate = next((r for r in results["models"] if r["model"] == "PyKEEN RotatE"), None)
    ours = next((r for r in results["models"] if r["model"].startswith("paretune")), None)
    if rotate and ours:
        results["mrr_ratio_vs_rotate"] = round(ours["mrr"] / max(rotate["mrr"], 1e-9), 3)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "models"}))


if __name__ == "__main__":
    main()

"""Ensembles and soups of equal-strength members, fitted on a 1,000-row held-out set (issue 19).

    OMP_NUM_THREADS=1 python bench/combining_equal.py [members] [combine] [report] [--rows N --epochs E]

The first try (bench/combining.py) fell short of both bars with one-epoch members spreading
0.77-0.85 and a 400-row validation set. Here the three members are alike: full fine-tunes of the
packaged MiniLM, lr 1e-4, 2 epochs, one seed (one head init, so they also soup), each on its own
2,500 SST-2 training rows (0-2.5k, 2.5k-5k, 5k-7.5k: their errors differ), all validated on the
same 1,000 training rows (60,000-61,000) that no member trains on; weights, the stacking
meta-model and the greedy soup's choices are fitted there. "dev" is the GLUE validation set
(872 rows, each run's `test`), which nothing selects on. (Sized for a shared 2-core CPU: about 20
minutes a member at load 10.)

members  ens-a, ens-b, ens-c
combine  ensembles (average, weighted, vote, stacking) and uniform and greedy soups of the three
report   tables for bench/RESULTS.md, and the ensemble with log-probabilities (= logits) averaged
noise    the average ensemble against the best member on dev, row by row, with a bootstrap interval

`--fit like-dev` fits the combining steps (`paretune ensemble/soup --validation`) on 1,744 other
training rows instead, drawn after the members' slices so that their word counts follow dev's
(two rows per dev row's length): held-out rows cut from SST-2's training *phrases* rank members
unlike dev's whole sentences. Those runs land in a `fit-like-dev/` folder beside the members.

Runs land in runs/combining-equal/ (ignored by git); a run already finished there is reused.
`--rows N --epochs E` gives each member N rows instead (slices 0-N, N-2N, 2N-3N; N <= 20,000 keeps
them clear of the held-out rows) and E epochs; those runs land in runs/combining-equal-N/.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import paretune  # noqa: E402
from paretune.combine.ensemble import build_ensemble  # noqa: E402
from paretune.combine.soup import build_soup  # noqa: E402

MEMBER = ROOT / "bench" / "configs" / "combining" / "sst2_member.yaml"
OUT = ROOT / "runs" / "combining-equal"
SST2 = ROOT.parent / "shared" / "data" / "sst2"
HELD_OUT = (60000, 61000)
COMMON = ["training.epochs=2", "training.seed=42", "data.max_train_rows=null"]
# One seed (42): one head init, so the members also soup; disjoint rows make their errors differ.
MEMBERS = {"ens-a": (0, 2500), "ens-b": (2500, 5000), "ens-c": (5000, 7500)}  # name: train rows
ENSEMBLE = list(MEMBERS)
SOUPS = {"soup": ENSEMBLE}
RULES = ("average", "weighted", "vote", "stacking")
FIT: Path | None = None  # the file the combining steps fit on (None: the members' own validation rows)
COMBINED = OUT  # where ensembles and soups land


def rows_file(name: str, start: int, end: int) -> Path:
    """Rows [start, end) of train.tsv (after its header), written under runs/."""
    path = OUT / "data" / f"{name}.tsv"
    if not path.is_file():
        lines = (SST2 / "train.tsv").read_text().splitlines(keepends=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines[0] + "".join(lines[1 + start:1 + end]))
    return path


def members() -> None:
    held_out = rows_file("held-out", *HELD_OUT)
    for name, (start, end) in MEMBERS.items():
        path = OUT / name
        if (path / "metrics.json").is_file():
            continue
        train = rows_file(f"rows-{start}-{end}", start, end)
        paretune.finetune(MEMBER, COMMON + [f"data.train={train}", f"data.validation={held_out}",
                                            f"output.dir={path}", "output.overwrite=true"])


def like_dev(first_row: int, per_dev_row: int = 2) -> Path:
    """Training rows from `first_row` on whose word counts follow dev's: for each dev row, draw
    `per_dev_row` unused rows of the same length (the nearest length left when one runs out)."""
    path = OUT / "data" / f"like-dev-from-{first_row}.tsv"
    if path.is_file():
        return path
    lines = (SST2 / "train.tsv").read_text().splitlines(keepends=True)
    pool: dict[int, list[str]] = {}
    for line in lines[1 + first_row:]:
        pool.setdefault(len(line.split("\t")[0].split()), []).append(line)
    rng = np.random.default_rng(0)
    for rows in pool.values():
        rng.shuffle(rows)
    dev = (SST2 / "validation.tsv").read_text().splitlines()[1:]
    chosen = []
    for length in sorted(len(line.split("\t")[0].split()) for line in dev for _ in range(per_dev_row)):
        nearest = min((k for k in pool if pool[k]), key=lambda k: (abs(k - length), k))
        chosen.append(pool[nearest].pop())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines[0] + "".join(chosen))
    return path


def combine() -> None:
    for rule in RULES:
        if not (COMBINED / f"ensemble-{rule}" / "metrics.json").is_file():
            build_ensemble([OUT / n for n in ENSEMBLE], rule, COMBINED / f"ensemble-{rule}", overwrite=True,
                           validation=FIT)
    for prefix, names in SOUPS.items():
        for recipe in ("uniform", "greedy"):
            if not (COMBINED / f"{prefix}-{recipe}" / "metrics.json").is_file():
                build_soup([OUT / n for n in names], recipe, COMBINED / f"{prefix}-{recipe}", overwrite=True,
                           validation=FIT)


def read(name: str) -> dict:
    folder = (OUT if name in MEMBERS else COMBINED) / name
    metrics = json.loads((folder / "metrics.json").read_text())
    cost = json.loads((folder / "cost.json").read_text())
    val = metrics["validation"]["accuracy"] if FIT is None or name not in MEMBERS else fit_accuracy(name)
    return {"name": name, "val": val, "test": metrics["test"]["accuracy"],
            "usd": cost.get("usd"), "wall_s": cost.get("wall_s"), "metrics": metrics}


def fit_accuracy(name: str) -> float:
    """A member's accuracy on the --fit rows (its own metrics.json has its validation rows')."""
    from paretune.combine.members import fit_on, load_predictors, member_outputs, open_members, read_splits

    found = fit_on(open_members([OUT / name], at_least=1), FIT)
    split, _ = read_splits(found[0])
    probs = np.stack(member_outputs(load_predictors(found)[0], split))
    return float((probs.argmax(1) == np.asarray(split.targets)).mean())


def logit_average() -> tuple[float, float]:
    """(held-out, dev) accuracy of the ensemble that averages log-probabilities (for softmax
    outputs the same as averaging logits) instead of probabilities."""
    from paretune.combine.members import fit_on, load_predictors, member_outputs, open_members, read_splits

    found = fit_on(open_members([OUT / n for n in ENSEMBLE]), FIT)
    predictors = load_predictors(found)
    scores = []
    for split in read_splits(found[0]):
        logp = sum(np.log(np.clip(np.stack(member_outputs(p, split)), 1e-12, 1)) for p in predictors)
        scores.append(float((logp.argmax(1) == np.asarray(split.targets)).mean()))
    return scores[0], scores[1]


def report() -> None:
    names = list(MEMBERS) + [f"ensemble-{r}" for r in RULES]
    names += [f"{p}-{r}" for p in SOUPS for r in ("uniform", "greedy")]
    print(f"| run | {'like-dev' if FIT else 'held-out'} acc | SST-2 dev acc | training $ | wall s |")
    print("| --- | --- | --- | --- | --- |")
    for row in [read(n) for n in names if ((OUT if n in MEMBERS else COMBINED) / n / "metrics.json").is_file()]:
        kept = row["metrics"].get("kept") or row["metrics"].get("weights") or ""
        print(f"| {row['name']} | {row['val']:.4f} | {row['test']:.4f} | {row['usd']} | {row['wall_s']} | {kept}")
    groups = {"ensemble": ENSEMBLE, **SOUPS}
    for name in names[len(MEMBERS):]:
        if (COMBINED / name / "metrics.json").is_file():
            group = groups[name.rsplit("-", 1)[0]]
            best = max(read(n)["test"] for n in group)
            print(f"{name}: dev {read(name)['test']:.4f} vs best member {best:.4f}: "
                  f"{100 * (read(name)['test'] - best):+.2f} points")
    if all((OUT / n / "metrics.json").is_file() for n in ENSEMBLE):
        val, dev = logit_average()
        best = max(read(n)["test"] for n in ENSEMBLE)
        print(f"ensemble averaging log-probabilities: held-out {val:.4f}, dev {dev:.4f} "
              f"({100 * (dev - best):+.2f} points)")


def noise() -> None:
    """How far "average ensemble minus best member" on dev is from chance: the rows where they
    differ, how often members disagree, and a bootstrap interval over the dev rows."""
    from paretune.combine.members import load_predictors, member_outputs, open_members, read_splits

    found = open_members([OUT / n for n in ENSEMBLE])
    _, dev = read_splits(found[0])
    targets = np.asarray(dev.targets)
    probs = [np.stack(member_outputs(p, dev)) for p in load_predictors(found)]
    right = [p.argmax(1) == targets for p in probs]
    ensemble, best = sum(probs).argmax(1) == targets, max(right, key=lambda r: r.mean())
    print(f"ensemble right where the best member is wrong: {int((ensemble & ~best).sum())} rows; the reverse: "
          f"{int((~ensemble & best).sum())}; members disagree on "
          f"{[int((probs[i].argmax(1) != probs[j].argmax(1)).sum()) for i in range(3) for j in range(i + 1, 3)]} rows")
    diff = ensemble.astype(float) - best
    rng = np.random.default_rng(0)
    boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(10000)]
    print(f"ensemble - best member: {100 * diff.mean():+.2f} points, bootstrap 95% "
          f"[{100 * np.percentile(boot, 2.5):+.2f}, {100 * np.percentile(boot, 97.5):+.2f}]")


def resize(rows: int, epochs: float) -> None:
    """Members of `rows` rows each, trained `epochs` epochs, in a folder of their own."""
    global OUT, COMBINED
    if 3 * rows > HELD_OUT[0]:
        sys.exit(f"--rows {rows}: three slices would reach the held-out rows ({HELD_OUT[0]:,}-{HELD_OUT[1]:,})")
    OUT = COMBINED = OUT.with_name(f"combining-equal-{rows}")
    COMMON[0] = f"training.epochs={epochs}"
    MEMBERS.update({name: (i * rows, (i + 1) * rows) for i, name in enumerate(MEMBERS)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="*", choices=["members", "combine", "report", "noise"])
    parser.add_argument("--rows", type=int, default=None, help="training rows per member (default 2,500)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--fit", choices=["held-out", "like-dev"], default="held-out",
                        help="rows the combining steps fit on (module docstring)")
    args = parser.parse_args()
    if args.rows is not None:
        resize(args.rows, args.epochs)
    if args.fit == "like-dev":
        FIT, COMBINED = like_dev(max(end for _, end in MEMBERS.values())), OUT / "fit-like-dev"
    for step in args.steps or ["members", "combine", "report"]:
        {"members": members, "combine": combine, "report": report, "noise": noise}[step]()

"""Ensembles, soups, few-shot and zero-shot on real SST-2 (issue 19), in one go.

    OMP_NUM_THREADS=1 python bench/combining.py [members] [combine] [curve] [report]

members  three MiniLM runs on the first 4,000 SST-2 training rows (bench/configs/combining/
         sst2_member.yaml; 10% held out as the validation set combining is fitted on), scored on
         the GLUE validation set (872 rows) as `test`, which no combining step sees
combine  ensembles (average, weighted, vote, stacking) of the three members, and uniform and
         greedy soups of the two full fine-tunes that share a head init (seed 42, lr differs)
curve    few-shot (SetFit recipe) vs ordinary full fine-tuning on the very same rows, 8/16/32/64
         examples per class, and zero-shot (label descriptions), all scored on the GLUE set
report   the tables (markdown, for bench/RESULTS.md), the ratios, and docs/combining_curve.png

Everything lands in runs/combining/ (ignored by git); a run already finished there is reused.
Data is read in place from ../shared/data; the few-shot rows are written under runs/ only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import paretune  # noqa: E402
from paretune.combine.ensemble import build_ensemble  # noqa: E402
from paretune.combine.soup import build_soup  # noqa: E402

MEMBER = ROOT / "bench" / "configs" / "combining" / "sst2_member.yaml"
OUT = ROOT / "runs" / "combining"
SST2 = ROOT.parent / "shared" / "data" / "sst2"
SLICES = {2: (4000, 8000), 3: (8000, 12000)}  # further 4,000-row slices of train.tsv (bagging-like)
MEMBERS = {
    "full-lr1e-4": [],
    "full-lr5e-5": ["training.lr=5e-5"],
    "lora-r16-s7": ["method.name=lora", "method.r=16", "training.lr=5e-4", "training.seed=7"],
    "full-slice2-s11": ["data.train=SLICE2", "training.seed=11"],
    "full-slice3-s23": ["data.train=SLICE3", "training.seed=23"],
}
# Ensembles: members trained on different rows with different seeds (diverse errors, similar
# quality), and, as the first try that fell short, three runs on the same rows.
ENSEMBLES = {"ensemble": ["full-lr1e-4", "full-slice2-s11", "full-slice3-s23"],
             "samerows-ensemble": ["full-lr1e-4", "full-lr5e-5", "lora-r16-s7"]}
ENSEMBLE = ENSEMBLES["ensemble"]
SOUP = ["full-lr1e-4", "full-lr5e-5"]  # one head init (seed 42): soups need a shared start
SHOTS = (8, 16, 32, 64)
DESCRIPTIONS = {"0": "a negative, bad movie review", "1": "a positive, good movie review"}


def train(name: str, config, overrides: list[str]) -> Path:
    path = OUT / name
    if (path / "metrics.json").is_file():
        return path
    return paretune.finetune(config, overrides + [f"output.dir={path}", "output.overwrite=true"]).path


def slice_file(k: int) -> Path:
    """Rows SLICES[k] of train.tsv (after its header), written under runs/ for one member."""
    start, end = SLICES[k]
    lines = (SST2 / "train.tsv").read_text().splitlines(keepends=True)
    path = OUT / "data" / f"slice-{k}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines[0] + "".join(lines[1 + start:1 + end]))
    return path


def members() -> None:
    for name, overrides in MEMBERS.items():
        overrides = [o.replace("SLICE2", str(slice_file(2))).replace("SLICE3", str(slice_file(3)))
                     if "SLICE" in o else o for o in overrides]
        train(name, MEMBER, overrides)


def combine() -> None:
    for prefix, names in ENSEMBLES.items():
        for rule in ("average", "weighted", "vote", "stacking"):
            if not (OUT / f"{prefix}-{rule}" / "metrics.json").is_file():
                build_ensemble([OUT / n for n in names], rule, OUT / f"{prefix}-{rule}", overwrite=True)
    for recipe in ("uniform", "greedy"):
        if not (OUT / f"soup-{recipe}" / "metrics.json").is_file():
            build_soup([OUT / n for n in SOUP], recipe, OUT / f"soup-{recipe}", overwrite=True)


def shot_files(per_class: int) -> tuple[Path, Path]:
    """The rows few-shot draws (same seed, same function) and the held-out validation rows, written
    out so the fine-tuning baseline trains on exactly those rows and is validated on the same ones."""
    from paretune.config import load_config
    from paretune.data.prepare import check_data
    from paretune.recipes.few_shot import draw_examples

    config = load_config(MEMBER, [f"output.dir={OUT / 'unused'}"])
    checked = check_data(config)
    names = checked.task.label_names
    folder = OUT / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shots = [(checked.train[i].text, names[checked.train_targets[i]])
             for i in draw_examples(checked.train_targets, per_class, config.data.seed)]
    held_out = [(ex.text, names[t]) for ex, t in zip(checked.validation, checked.validation_targets)]
    paths = folder / f"shots-{per_class}.tsv", folder / "held-out.tsv"
    for path, rows in zip(paths, (shots, held_out)):
        path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return paths


def curve() -> None:
    train("zero-shot", MEMBER, ["method.name=zero-shot", f"method.descriptions={json.dumps(DESCRIPTIONS)}"])
    for k in SHOTS:
        train(f"few-shot-{k}", MEMBER, ["method.name=few-shot", f"method.examples_per_class={k}"])
        # Ordinary fine-tuning on exactly those rows: 10 epochs at batch 16 (a few dozen steps),
        # validated on the same held-out rows as few-shot.
        shots, held_out = shot_files(k)
        train(f"finetune-{k}", MEMBER, [f"data.train={shots}", f"data.validation={held_out}",
                                        "data.max_train_rows=null", "training.epochs=10"])


def read(name: str) -> dict:
    folder = OUT / name
    metrics = json.loads((folder / "metrics.json").read_text())
    cost = json.loads((folder / "cost.json").read_text())
    return {"name": name, "val": metrics["validation"]["accuracy"], "test": metrics["test"]["accuracy"],
            "usd": cost.get("usd"), "wall_s": cost.get("wall_s"), "metrics": metrics}


def report() -> None:
    rows = [read(n) for n in MEMBERS if (OUT / n / "metrics.json").is_file()]
    print("| run | held-out validation acc | SST-2 dev acc | training $ | wall s |")
    print("| --- | --- | --- | --- | --- |")
    combined = [f"{prefix}-{r}" for prefix in ENSEMBLES for r in ("average", "weighted", "vote", "stacking")]
    combined += ["soup-uniform", "soup-greedy"]
    for row in rows + [read(n) for n in combined if (OUT / n / "metrics.json").is_file()]:
        print(f"| {row['name']} | {row['val']:.4f} | {row['test']:.4f} | {row['usd']} | {row['wall_s']} |")
    best = {prefix: max(read(n)["test"] for n in names) for prefix, names in ENSEMBLES.items()
            if all((OUT / n / "metrics.json").is_file() for n in names)}
    best["soup"] = max(read(n)["test"] for n in SOUP)
    for name in combined:
        if (OUT / name / "metrics.json").is_file():
            base = best[name.rsplit("-", 1)[0]]
            print(f"{name}: dev {read(name)['test']:.4f} vs best member {base:.4f}: "
                  f"{100 * (read(name)['test'] - base):+.2f} points")
    _curve_report()


def _curve_report() -> None:
    if not (OUT / "zero-shot" / "metrics.json").is_file():
        return
    zero = read("zero-shot")
    print(f"\nzero-shot: dev {zero['test']:.4f}, training ${zero['usd']}")
    print("| examples per class | few-shot dev acc | few-shot $ | fine-tune dev acc | fine-tune $ | points |")
    print("| --- | --- | --- | --- | --- | --- |")
    points = []
    for k in SHOTS:
        if not (OUT / f"finetune-{k}" / "metrics.json").is_file():
            continue
        few, tune = read(f"few-shot-{k}"), read(f"finetune-{k}")
        points.append((k, few, tune))
        print(f"| {k} | {few['test']:.4f} | {few['usd']} | {tune['test']:.4f} | {tune['usd']} | "
              f"{100 * (few['test'] - tune['test']):+.1f} |")
    if points:
        plot(points, zero)


def plot(points, zero) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    ks = [k for k, _, _ in points]
    left.plot(ks, [f["test"] for _, f, _ in points], "o-", label="few-shot (SetFit recipe)")
    left.plot(ks, [t["test"] for _, _, t in points], "s-", label="full fine-tuning, same rows")
    left.axhline(zero["test"], color="grey", ls="--", label="zero-shot ($0)")
    left.set(xscale="log", xlabel="labelled examples per class", ylabel="SST-2 dev accuracy", xticks=ks,
             xticklabels=[str(k) for k in ks], title="Accuracy")
    left.minorticks_off()
    left.legend()
    right.plot([f["usd"] for _, f, _ in points], [f["test"] for _, f, _ in points], "o-", label="few-shot")
    right.plot([t["usd"] for _, _, t in points], [t["test"] for _, _, t in points], "s-", label="fine-tuning")
    for k, f, t in points:
        right.annotate(str(k), (f["usd"], f["test"]))
        right.annotate(str(k), (t["usd"], t["test"]))
    right.axhline(zero["test"], color="grey", ls="--", label="zero-shot ($0)")
    right.set(xlabel="training dollars (2-core CPU price; shared machine)", ylabel="SST-2 dev accuracy", title="Accuracy per dollar")
    right.legend()
    fig.tight_layout()
    target = ROOT / "docs" / "combining_curve.png"
    fig.savefig(target, dpi=110)
    print(f"\nwrote {target}")


if __name__ == "__main__":
    steps = sys.argv[1:] or ["members", "combine", "curve", "report"]
    for step in steps:
        {"members": members, "combine": combine, "curve": curve, "report": report}[step]()

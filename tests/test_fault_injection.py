"""Kill training at random moments, resume, and get exactly the run that was never killed.

Each seed draws a chain of faults (paretune.engine.faults): a kill while a checkpoint is being
written, a kill after a random step (with a torn last line left in metrics.jsonl, as a kill in the
middle of appending it leaves), and a kill while the final model is written or just after the run
finished. After each, `paretune train --resume` continues; at the end the run's metrics, logged
evaluations (train_loss included) and weights must equal those of an uninterrupted run.

The default is one seed on `paretune train` in forked children (they share this process's imports,
so a kill costs no start-up). `PARETUNE_SOAK_SEEDS=20 pytest tests/test_fault_injection.py` runs
20 more seeds, then kills real `python -m paretune` processes at 20 x 3 random wall-clock moments.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

SOAK_SEEDS = int(os.environ.get("PARETUNE_SOAK_SEEDS", "0"))  # by hand only: minutes per seed
STEPS, SAVE_EVERY, EVAL_EVERY = 24, 4, 5  # checkpoints at 4, 8, ..., 20; evaluations cut across them


@pytest.fixture()
def fault_config(tiny_config, tmp_path) -> Path:
    cfg = {**tiny_config, "training": {**tiny_config["training"], "max_steps": STEPS, "save_every": SAVE_EVERY,
                                       "eval_every": EVAL_EVERY, "log_every": 1000}}
    cfg.pop("output")
    path = tmp_path / "fault.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli_in_fork(args: list[str], fault: str | None = None, timeout: float = 300) -> int:
    """`paretune ARGS` in a forked copy of this process; its exit code (-9: killed by the fault)."""
    child = multiprocessing.get_context("fork").Process(target=_cli_child, args=(args, fault))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        raise AssertionError(f"paretune {' '.join(args)} did not finish in {timeout}s")
    return child.exitcode


def _cli_child(args: list[str], fault: str | None) -> None:
    os.environ.pop("PARETUNE_FAULT_AT_STEP", None)
    if fault:
        os.environ["PARETUNE_FAULT_AT"] = fault
    sys.argv = ["paretune", *args]
    from paretune.cli import main

    main()


def reference_run(config: Path, out: Path) -> Path:
    """The uninterrupted run, trained in this process."""
    import paretune

    return paretune.finetune(config, [f"output.dir={out}"]).path


def assert_same_run(straight: Path, resumed: Path, tol: float = 1e-6, slimmed: bool = True) -> None:
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (straight, resumed))
    assert (a["steps"], a["best_step"]) == (b["steps"], b["best_step"])
    for key, value in a["validation"].items():
        if isinstance(value, float):
            assert abs(value - b["validation"][key]) <= tol, key
    history_a, history_b = (_history(r) for r in (straight, resumed))
    assert [h["step"] for h in history_a] == [h["step"] for h in history_b]
    for ha, hb in zip(history_a, history_b):
        assert abs(ha["train_loss"] - hb["train_loss"]) <= tol, ("train_loss", ha["step"])
        assert abs(ha["validation"]["loss"] - hb["validation"]["loss"]) <= tol, ("loss", ha["step"])
    wa, wb = (load_file(str(r / "model" / "model.safetensors")) for r in (straight, resumed))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= tol
    assert (resumed / "checkpoints").exists() != slimmed  # slimmed like the uninterrupted run


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def fault_chain(seed: int) -> list[str]:
    """Kills, in the order a run meets them: during a checkpoint write, after a later step, and
    while the final model is written or just after the run finished."""
    rng = random.Random(seed)
    checkpoint = rng.randrange(SAVE_EVERY, STEPS, SAVE_EVERY)
    step = rng.randint(checkpoint + 1, STEPS)
    return [f"checkpoint:{checkpoint}", f"step:{step}", rng.choice(["final-model", "finished"])]


def kill_and_resume(config: Path, run: Path, faults: list[str]) -> bool:
    """Run the chain; whether the run got slimmed (a kill just after it finished leaves it whole,
    and finished: resuming it is refused, exit 2)."""
    code = cli_in_fork(["train", str(config), "--set", f"output.dir={run}"], faults[0])
    assert code == -signal.SIGKILL, f"{faults[0]}: exit {code}"
    for fault in faults[1:]:
        if fault.startswith("step") and (run / "metrics.jsonl").is_file():
            with open(run / "metrics.jsonl", "a") as f:  # a kill in the middle of appending a line
                f.write('{"step": 99, "validation": {"lo')
        code = cli_in_fork(["train", "--resume", str(run)], fault)
        assert code == -signal.SIGKILL, f"{fault}: exit {code}"
    code = cli_in_fork(["train", "--resume", str(run)])
    assert code == (2 if faults[-1] == "finished" else 0), f"last resume: exit {code}"
    return faults[-1] != "finished"


def test_killed_at_random_moments_resumes_to_the_uninterrupted_run(fault_config, tmp_path, one_torch_thread):
    straight = reference_run(fault_config, tmp_path / "straight")
    slimmed = kill_and_resume(fault_config, tmp_path / "killed", fault_chain(seed=0))
    assert_same_run(straight, tmp_path / "killed", slimmed=slimmed)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK_SEEDS, reason="soak run by hand: PARETUNE_SOAK_SEEDS=N")
def test_soak_many_seeds_and_wall_clock_kills(fault_config, tmp_path, one_torch_thread):
    straight = reference_run(fault_config, tmp_path / "straight")
    for seed in range(1, SOAK_SEEDS + 1):
        run = tmp_path / f"killed-{seed}"
        assert_same_run(straight, run, slimmed=kill_and_resume(fault_config, run, fault_chain(seed)))
    for seed in range(SOAK_SEEDS):
        run = tmp_path / f"wall-clock-{seed}"
        _kill_at_random_times(fault_config, run, random.Random(seed))
        assert_same_run(straight, run, tol=1e-5, slimmed=not (run / "checkpoints").exists())


def _kill_at_random_times(config: Path, run: Path, rng: random.Random, kills: int = 3) -> None:
    """Real `python -m paretune` processes, SIGKILLed after a random time; then run to the end."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PARETUNE_FAULT_AT", None)
    for attempt in range(kills + 1):
        started = (run / "config.yaml").is_file()
        args = ["train", "--resume", str(run)] if started else ["train", str(config), "--set", f"output.dir={run}"]
        if started and (run / "metrics.json").is_file():
            return
        proc = subprocess.Popen([sys.executable, "-m", "paretune", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if attempt < kills:
            time.sleep(rng.uniform(5, 25))
            proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode in (0, -signal.SIGKILL), stderr[-3000:]
    assert (run / "metrics.json").is_file()

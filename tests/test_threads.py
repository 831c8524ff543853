"""Threads from the CPUs a process may really use (engine/threads.py), on fake cgroup files."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import torch

from paretune.engine import threads
from paretune.engine.threads import cgroup_quota_cpus, choose_threads, prefer_passive_waiting


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_tightest_along_the_ancestors(tmp_path):
    proc = tmp_path / "proc_cgroup"
    _write(proc, "0::/kubepods/pod1/ctr\n")
    root = tmp_path / "cg"
    _write(root / "kubepods/pod1/ctr/cpu.max", "max 100000\n")  # the container itself: no limit
    _write(root / "kubepods/pod1/cpu.max", "150000 100000\n")  # the pod: 1.5 cores
    _write(root / "kubepods/cpu.max", "400000 100000\n")
    assert cgroup_quota_cpus(root, proc) == 1.5


def test_cgroup_v2_without_a_quota_and_unreadable_files(tmp_path):
    proc = tmp_path / "proc_cgroup"
    _write(proc, "0::/\n")
    _write(tmp_path / "cg/cpu.max", "max 100000\n")
    assert cgroup_quota_cpus(tmp_path / "cg", proc) is None
    assert cgroup_quota_cpus(tmp_path / "cg", tmp_path / "missing") is None


def test_cgroup_v1_cfs_quota_and_a_container_mount(tmp_path):
    proc = tmp_path / "proc_cgroup"
    # /proc names the host's path; inside the container the mount is the container's own cgroup.
    _write(proc, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    mount = tmp_path / "cg/cpu,cpuacct"
    _write(mount / "cpu.cfs_quota_us", "100000\n")
    _write(mount / "cpu.cfs_period_us", "100000\n")
    assert cgroup_quota_cpus(tmp_path / "cg", proc) == 1.0
    _write(mount / "cpu.cfs_quota_us", "-1\n")  # v1's "no limit"
    assert cgroup_quota_cpus(tmp_path / "cg", proc) is None


def test_choice_takes_the_smaller_of_affinity_and_quota_and_the_user_wins():
    assert choose_threads({}, affinity=8, quota=2.5).threads == 2  # a fractional quota rounds down
    assert choose_threads({}, affinity=8, quota=2.5).source == "cgroup quota"
    assert choose_threads({}, affinity=8, quota=0.5).threads == 1
    assert choose_threads({}, affinity=2, quota=16.0).threads == 2
    no_quota = choose_threads({}, affinity=3, read_quota=False)
    assert (no_quota.threads, no_quota.source, no_quota.quota_cpus) == (3, "affinity", None)
    user = choose_threads({"OMP_NUM_THREADS": "5", "OMP_WAIT_POLICY": "ACTIVE"}, affinity=2, quota=1.0)
    assert (user.threads, user.source, user.wait_policy) == (5, "OMP_NUM_THREADS", "ACTIVE")
    assert "1.5" in choose_threads({}, affinity=4, quota=1.5).describe()


def test_the_choice_is_applied_and_logged(caplog, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        with caplog.at_level(logging.INFO, logger="paretune"):
            choice = threads.use_available_cpus()
        assert choice.threads == torch.get_num_threads() == 1
        assert "1 torch threads (OMP_NUM_THREADS" in caplog.text
        torch.set_num_threads(1)  # set lower than the choice before the run: kept, and said so
        monkeypatch.delenv("OMP_NUM_THREADS")
        kept = threads.use_available_cpus()
        assert torch.get_num_threads() == kept.threads == 1
        if threads.choose_threads().threads > 1:
            assert kept.source == "set lower before the run"
    finally:
        torch.set_num_threads(before)


def test_passive_waiting_only_before_torch_and_never_over_the_user():
    assert prefer_passive_waiting({}) is False  # torch is imported in this process: too late
    assert prefer_passive_waiting({"OMP_WAIT_POLICY": "ACTIVE"}) is False
    code = ("import os; from paretune.engine.threads import prefer_passive_waiting as p; "
            "print(p(), os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["True", "PASSIVE"]


def test_the_cli_asks_for_passive_waiting_before_torch_loads():
    """`paretune ...` in a fresh interpreter: OMP_WAIT_POLICY is PASSIVE by the time torch loads,
    and a policy the user set is kept."""
    import os
    import subprocess
    import sys

    probe = ("import sys, paretune.cli as c; c._register = lambda: (__import__('torch'), "
             "print(__import__('os').environ.get('OMP_WAIT_POLICY')), sys.exit(0)); c.main()")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ACTIVE", out.stderr


def test_launched_workers_share_the_cores_this_process_may_use():
    """`training.nproc` workers split the affinity/quota count a single run would use, not the
    machine's `os.cpu_count()` (a container limited to 2 of 64 cores gets 1 thread per worker)."""
    from paretune.distributed.launch import worker_threads
    from paretune.engine.threads import choose_threads

    limited = choose_threads(environ={}, affinity=64, quota=2.0)
    assert worker_threads(2, limited) == 1 and worker_threads(4, limited) == 1
    assert worker_threads(2, choose_threads(environ={}, affinity=8, quota=None)) == 4

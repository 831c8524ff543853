"""How many threads torch computes with, from the CPUs this process may really use.

torch sizes its intra-op pool by the cores it sees, which in a container with a CPU quota
(Kubernetes `limits.cpu`, `docker --cpus`) or beside other jobs is more than it gets: the extra
threads wait for each other at the end of every parallel region, and the quota throttles the
whole process. So the count is the smallest of the cores in the affinity mask (taskset, cpusets)
and the cgroup's CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`, the tightest
along the cgroup's ancestors), unless the user set OMP_NUM_THREADS, which always wins.

Waiting: this torch build's OpenMP is GNU libgomp, whose threads spin after each parallel region
before sleeping. On a core that another job (or the quota) needs, that spinning is time taken
from the work. `OMP_WAIT_POLICY=PASSIVE` makes them sleep at once; libgomp reads it once, when
torch is imported, so `prefer_passive_waiting()` must run before that (the CLI's first line).
Measured here (a loop of 256x256 matmuls between short serial steps, 2 threads, other jobs on
the 2 cores): 12-17 s wall by default, 0.5-1.4 s with PASSIVE. `KMP_BLOCKTIME` is Intel OpenMP's
knob and changes nothing on libgomp (measured the same as the default).
"""
from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

log = logging.getLogger("paretune")

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int  # torch's intra-op threads for this run
    affinity_cpus: int  # cores the process may be scheduled on
    quota_cpus: float | None  # the cgroup's CPU quota in cores (None: no quota)
    source: str  # what decided: "OMP_NUM_THREADS", "cgroup quota" or "affinity"
    wait_policy: str | None  # OMP_WAIT_POLICY as torch's OpenMP read it (None: libgomp's spinning default)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        quota = f"{self.quota_cpus:g}" if self.quota_cpus is not None else "none"
        return (f"{self.threads} torch threads ({self.source}; affinity {self.affinity_cpus} cores, cgroup quota "
                f"{quota}, OMP_WAIT_POLICY {self.wait_policy or 'unset: threads spin while waiting'})")


# --- reading the limits ----------------------------------------------------------------------
def affinity_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cgroup_quota_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The process's CPU quota in cores (1.5 for `--cpus 1.5`), or None when there is none or the
    files cannot be read (not Linux, no cgroup mounted)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one unified hierarchy
            quotas += [_v2_quota(d / "cpu.max") for d in _cgroup_dirs(root, path)]
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                quotas += [_v1_quota(d) for d in _cgroup_dirs(mount, path)]
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def _cgroup_dirs(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and its ancestors up to the mount: a parent's limit binds its children.
    Inside a container the mount is often the container's own cgroup while /proc names the host's
    path, so the mount itself is always among them."""
    parts = [p for p in path.strip("/").split("/") if p]
    dirs = [mount.joinpath(*parts[:i]) for i in range(len(parts), 0, -1)]
    return [d for d in [*dirs, mount] if d.is_dir()]


def _v2_quota(cpu_max: Path) -> float | None:
    try:
        quota, _, period = cpu_max.read_text().strip().partition(" ")
    except OSError:
        return None
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


# --- choosing and applying ---------------------------------------------------------------------
def choose_threads(environ=os.environ, affinity: int | None = None, quota: float | None = None,
                   read_quota: bool = True) -> ThreadChoice:
    affinity = affinity if affinity is not None else affinity_cpus()
    if quota is None and read_quota:
        quota = cgroup_quota_cpus()
    policy = environ.get("OMP_WAIT_POLICY")
    user = environ.get("OMP_NUM_THREADS", "").strip()
    if user.isdigit() and int(user) > 0:
        return ThreadChoice(int(user), affinity, quota, "OMP_NUM_THREADS", policy)
    # A fractional quota rounds down: 1.5 cores run 1 thread at full speed, 2 would be throttled.
    allowed = max(1, math.floor(quota)) if quota is not None else affinity
    if allowed < affinity:
        return ThreadChoice(allowed, affinity, quota, "cgroup quota", policy)
    return ThreadChoice(affinity, affinity, quota, "affinity", policy)


def use_available_cpus() -> ThreadChoice:
    """Lower torch's thread count to `choose_threads()` (never raise one set lower before: a test,
    a caller's own `torch.set_num_threads`), log what the run computes with, and return it."""
    import torch

    choice = choose_threads()
    if torch.get_num_threads() > choice.threads:
        torch.set_num_threads(choice.threads)
    choice = threads_in_use(choice)
    log.info("CPU: %s", choice.describe())
    return choice


def threads_in_use(choice: ThreadChoice | None = None) -> ThreadChoice:
    """`choice` (or a fresh one) with the threads torch really has now (recorded in cost.json)."""
    import torch

    choice = choice or choose_threads()
    running = torch.get_num_threads()
    if running < choice.threads:
        return replace(choice, threads=running, source="set lower before the run")
    return choice


def prefer_passive_waiting(environ=os.environ) -> bool:
    """Ask OpenMP threads to sleep rather than spin when idle, unless the user chose a policy.
    Only takes effect before torch is imported; returns whether it was set now."""
    if "OMP_WAIT_POLICY" in environ or "torch" in sys.modules:
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True

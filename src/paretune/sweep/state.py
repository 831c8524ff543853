"""The sweep folder's record of what ran: sweep.json (current state) and variants.jsonl (history).

    SWEEP_DIR/
      sweep.json       the spec and one record per variant: status, overrides, metric, error
      variants.jsonl   one line per event (started, finished, failed, skipped), append-only
      runs/<variant>/  ordinary run folders
      optuna.db        the search study (when the sweep has `search:`)

A run folder with metrics.json is finished whatever sweep.json says, so a crash between the
run's last write and the record's update loses nothing. Several workers may share one sweep
folder (one sweep file started on several machines with a shared disk, or Ray trials): every
read-modify-write of sweep.json holds a file lock, and a worker *claims* a variant (host, pid)
before running it. A claim whose process is gone is stale and is taken over on the next run.
"""
from __future__ import annotations

import json
import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import psutil
from filelock import FileLock

from paretune.errors import ParetuneError
from paretune.run_folder import atomic_write
from paretune.sweep.spec import Sweep, Variant

STATE_FILE = "sweep.json"
EVENTS_FILE = "variants.jsonl"
LOCK_FILE = ".sweep.lock"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Claim:
    """A variant this worker will run: `fresh` restarts its folder instead of resuming it."""

    variant: Variant
    fresh: bool = False
    bench_only: bool = False


class SweepState:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "session": uuid.uuid4().hex[:12]}
        self._lock = FileLock(str(self.folder / LOCK_FILE), timeout=600)

    @classmethod
    def start(cls, sweep: Sweep) -> "SweepState":
        sweep.folder.mkdir(parents=True, exist_ok=True)
        state = cls(sweep.folder)
        with state.transaction() as data:
            data.setdefault("name", sweep.name)
            data.setdefault("created", now())
            data.setdefault("variants", {})
            data["source"] = str(sweep.source.resolve())
            data["spec"] = sweep.spec.model_dump(mode="json")
        return state

    # --- the locked state file ------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Read sweep.json, let the caller change it, write it back, all under the lock."""
        with self._lock:
            data = read_state(self.folder)
            yield data
            data["updated"] = now()
            atomic_write(self.folder / STATE_FILE, json.dumps(data, indent=2, default=str) + "\n")

    def event(self, name: str, event: str, **details: Any) -> None:
        line = json.dumps({"time": now(), "variant": name, "event": event, **details}, default=str)
        with self._lock, open(self.folder / EVENTS_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    # --- claims -----------------------------------------------------------------------------
    def check_overrides(self, variants: list[Variant]) -> None:
        """A finished variant whose overrides changed in the sweep file would be silently kept
        with its old settings: refuse, and say how to get the new one."""
        records = read_state(self.folder).get("variants", {})
        for variant in variants:
            record = records.get(variant.name)
            if record and _changed(record, variant) and self._finished(variant.name):
                raise ParetuneError(
                    f"variant {variant.name} finished with overrides {record['overrides']} but the sweep file "
                    f"now gives {variant.overrides}: rename the variant, or delete "
                    f"{self.folder / 'runs' / variant.name} to run it again"
                )

    def claim(self, variants: list[Variant], limit: int, *, bench: bool, reclaim: bool) -> list[Claim]:
        """Take up to `limit` variants that need work and nobody alive is running."""
        claims: list[Claim] = []
        with self.transaction() as data:
            records = data["variants"]
            for variant in variants:
                if len(claims) >= limit:
                    break
                claim = self._decide(variant, records.get(variant.name), bench=bench, reclaim=reclaim)
                if claim is None:
                    continue
                self.mark_running(records, variant, claim)
                claims.append(claim)
        return claims

    def _decide(self, variant: Variant, record: dict | None, *, bench: bool, reclaim: bool) -> Claim | None:
        run_dir = self.folder / "runs" / variant.name
        if self._finished(variant.name):
            if bench and not (run_dir / "inference.json").is_file():
                if record and record.get("status") == "running" and self.alive(record, reclaim):
                    return None
                return Claim(variant, bench_only=True)
            return None
        if record and record.get("status") == "running" and self.alive(record, reclaim):
            return None  # another live worker has it
        fresh = bool(record) and (record.get("status") == "failed" or _changed(record, variant))
        return Claim(variant, fresh=fresh)

    def mark_running(self, records: dict, variant: Variant, claim: Claim) -> None:
        record = records.setdefault(variant.name, {"name": variant.name, "attempts": 0})
        record.update(
            overrides=variant.overrides, trial=variant.trial, run_dir=f"runs/{variant.name}",
            status="running", owner=self.owner, started=now(),
        )
        if not claim.bench_only:
            record["attempts"] = record.get("attempts", 0) + 1
            for stale in ("error", "traceback", "value", "seconds", "finished"):
                record.pop(stale, None)

    def alive(self, record: dict, reclaim: bool = False) -> bool:
        owner = record.get("owner") or {}
        if owner.get("session") == self.owner["session"]:
            return True
        if reclaim:
            return False
        if owner.get("host") != self.owner["host"]:
            return True  # cannot look at another machine's processes; --reclaim takes it over
        pid = owner.get("pid")
        return pid != os.getpid() and pid is not None and psutil.pid_exists(pid)

    def _finished(self, name: str) -> bool:
        return (self.folder / "runs" / name / "metrics.json").is_file()

    # --- outcomes ---------------------------------------------------------------------------
    def recover_finished(self, variants: list[Variant], metric: str) -> None:
        """Mark finished the variants whose run folder finished but whose record never said so
        (the worker died after the run's last write)."""
        from paretune.sweep.job import finished_metrics

        with self.transaction() as data:
            for variant in variants:
                record = data["variants"].get(variant.name)
                if not self._finished(variant.name) or (record or {}).get("status") == "finished":
                    continue
                if record and record.get("status") == "running" and self.alive(record):
                    continue
                record = data["variants"].setdefault(variant.name, {"name": variant.name, "attempts": 1})
                metrics = finished_metrics(self.folder / "runs" / variant.name, metric)
                record.update(overrides=variant.overrides, trial=variant.trial, run_dir=f"runs/{variant.name}",
                              status="finished", finished=now(), **metrics)
                record.pop("owner", None)

    def record(self, variant: Variant, outcome: dict[str, Any]) -> dict[str, Any]:
        with self.transaction() as data:
            record = data["variants"].setdefault(variant.name, {"name": variant.name, "attempts": 1})
            record.setdefault("overrides", variant.overrides)
            record.setdefault("run_dir", f"runs/{variant.name}")
            record.update({k: v for k, v in outcome.items() if k != "name"})
            record["trial"] = variant.trial
            record["finished"] = now()
            record.pop("owner", None)
            result = dict(record)
        details = {k: outcome.get(k) for k in ("status", "action", "metric", "value", "seconds", "error")}
        self.event(variant.name, outcome["status"], **{k: v for k, v in details.items() if v is not None})
        return result

    def records(self) -> dict[str, dict[str, Any]]:
        return read_state(self.folder).get("variants", {})


def read_state(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ParetuneError(f"{path} is not valid JSON ({err}); restore it or delete it (runs are kept)") from None


def _changed(record: dict, variant: Variant) -> bool:
    normal = json.dumps(variant.overrides, sort_keys=True, default=str)
    return json.dumps(record.get("overrides"), sort_keys=True, default=str) != normal

"""The runs and sweeps under the folders `paretune ui` was given, found afresh on each request.

A folder given may be a run folder, a sweep folder, or a folder holding either (one level of
nesting: `runs/` with `runs/sweep-a/` and `runs/bert-lora/`). Each run gets an id made from its
path below the folder given ("sweep-a~runs~lora"): pages and data routes look ids up here and never
turn a client's text into a path, so no request can name a file outside these run folders.

Reading 1,000 run folders parses 1,000 config.yaml files: each file's parsed form is kept while
its size and modification time stay the same, so a refresh costs a `stat` per file.
"""
from __future__ import annotations

import json
import os
import time
from stat import S_ISLNK
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


STATE_FILE = "sweep.json"  # paretune.sweep.state.STATE_FILE, without importing the sweep package at start
# A run without metrics.json whose files changed this recently is taken to be training still:
# runs write metrics.jsonl at each evaluation and a checkpoint every save_every steps.
RUNNING_WINDOW_S = 300.0
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: ~10x faster
SUMMARY_SECTIONS = ("model", "task", "method")  # of config.yaml, what the runs table shows
RUN_FILES = ("config.yaml", "metrics.json", "cost.json", "inference.json")  # what a row is read from


@dataclass
class RunInfo:
    """What the runs table shows of one run folder; None where the run has not written it."""

    id: str
    name: str
    path: Path
    sweep: str | None = None
    status: str = "interrupted"  # running, finished, failed, interrupted
    task: str | None = None
    method: str | None = None
    base_model: str | None = None
    metric: str | None = None
    quality: float | None = None
    train_usd: float | None = None
    serve_usd_per_million: float | None = None
    wall_s: float | None = None
    started: float | None = None  # epoch seconds: when config.yaml was written
    error: str | None = None

    def sort_key(self, column: str) -> tuple:
        value = getattr(self, column, None)
        return (value is None, value if value is not None else 0)


@dataclass
class SweepInfo:
    id: str
    name: str
    path: Path
    runs: list[RunInfo] = field(default_factory=list)


class Catalog:
    """Finds runs and sweeps under `roots`; the only way pages reach a run folder."""

    def __init__(self, roots: list[Path]):
        self.roots = [Path(r).resolve() for r in roots]
        self._parsed: dict[tuple, tuple[tuple[int, int], Any]] = {}  # (path, sections) -> (stamp, content)
        self._by_id: dict[str, RunInfo] = {}  # from the last scan
        self._records: dict[str, dict] = {}  # sweep records of the runs in sweeps, by run id
        self._runs: dict[tuple, tuple[tuple, RunInfo]] = {}  # (folder, prefix, sweep) -> (file stamps, row)

    # --- finding ------------------------------------------------------------------------------
    def scan(self) -> tuple[list[RunInfo], list[SweepInfo]]:
        runs: list[RunInfo] = []
        sweeps: list[SweepInfo] = []
        for root in self.roots:
            prefix = f"{root.name}~" if len(self.roots) > 1 else ""
            self._scan_folder(root, root, prefix, runs, sweeps, depth=0)
        self._by_id = {}
        for run in runs:
            self._by_id.setdefault(run.id, run)  # two runs could share an id only by odd naming: first wins
        return runs, sweeps

    def _scan_folder(self, root: Path, folder: Path, prefix: str, runs: list, sweeps: list, depth: int) -> None:
        if (folder / "config.yaml").is_file():
            runs.append(self.read_run(root, folder, prefix))
        elif (folder / STATE_FILE).is_file():
            sweeps.append(self._read_sweep(root, folder, prefix, runs))
        elif depth < 2:
            for child, is_link in sorted(_subfolders(folder)):
                if not is_link or _inside(child, root):  # a symlink out of the folder given is never followed
                    self._scan_folder(root, child, prefix, runs, sweeps, depth + 1)

    def _read_sweep(self, root: Path, folder: Path, prefix: str, runs: list) -> SweepInfo:
        from paretune.sweep.state import read_state

        sweep = SweepInfo(id=_run_id(root, folder, prefix), name=folder.name, path=folder)
        try:
            records = read_state(folder).get("variants", {})
        except Exception:  # sweep.json being rewritten, or damaged: show the run folders alone
            records = {}
        seen = set()
        for name, record in records.items():
            run_dir = folder / record.get("run_dir", f"runs/{name}")
            if (run_dir / "config.yaml").is_file() and _inside(run_dir, root):
                seen.add(run_dir.resolve())
                sweep.runs.append(self.read_run(root, run_dir, prefix, sweep=folder.name, record=record))
                self._records[sweep.runs[-1].id] = record
        for run_dir, _ in sorted(_subfolders(folder / "runs")):
            if run_dir.resolve() not in seen and (run_dir / "config.yaml").is_file() and _inside(run_dir, root):
                sweep.runs.append(self.read_run(root, run_dir, prefix, sweep=folder.name))
        runs.extend(sweep.runs)
        return sweep

    def find(self, run_id: str) -> RunInfo | None:
        """The run with this id, or None: the one lookup pages use to reach a run folder. The id is
        looked up among the runs the last scan found (a new id scans again), never made a path."""
        known = self._by_id.get(run_id)
        if known is None or not (known.path / "config.yaml").is_file():
            self.scan()
            known = self._by_id.get(run_id)
        if known is None:
            return None
        root = next(r for r in self.roots if known.path == r or known.path.is_relative_to(r))
        prefix = known.id[: len(known.id) - len(_run_id(root, known.path, ""))]
        return self.read_run(root, known.path, prefix, sweep=known.sweep, record=self._records.get(run_id))

    # --- reading ------------------------------------------------------------------------------
    def read_run(self, root: Path, folder: Path, prefix: str = "", sweep: str | None = None,
                 record: dict | None = None) -> RunInfo:
        """The run's row, read again only when one of its files changed (a stat each otherwise)."""
        record = record or {}
        base = str(folder)
        stamps = (tuple(_stamp(f"{base}/{name}") for name in RUN_FILES), record.get("status"), record.get("error"))
        kept = self._runs.get((base, prefix, sweep))
        if kept is not None and kept[0] == stamps:
            run = kept[1]
            if run.status != "finished":
                run.status, run.error = _status(folder, None, record)
            return run
        run = self._read_run(root, folder, prefix, sweep, record)
        self._runs[(base, prefix, sweep)] = (stamps, run)
        return run

    def _read_run(self, root: Path, folder: Path, prefix: str, sweep: str | None, record: dict) -> RunInfo:
        run = RunInfo(id=_run_id(root, folder, prefix), name=folder.name, path=folder, sweep=sweep)
        config = self.parsed(folder / "config.yaml", sections=SUMMARY_SECTIONS) or {}
        run.task = (config.get("task") or {}).get("type")
        run.method = (config.get("method") or {}).get("name")
        run.base_model = _short_model((config.get("model") or {}).get("name_or_path"))
        metrics = self.parsed(folder / "metrics.json")
        run.status, run.error = _status(folder, metrics, record)
        if metrics:
            from paretune.frontier.points import ranking_metric

            run.metric = ranking_metric(metrics)
            value = (metrics.get("validation") or {}).get(run.metric)
            run.quality = float(value) if isinstance(value, (int, float)) else None
        cost = self.parsed(folder / "cost.json") or {}
        run.train_usd = _number(cost.get("usd"))
        run.wall_s = _number(cost.get("wall_s"))
        run.serve_usd_per_million = _number((self.parsed(folder / "inference.json") or {}).get("usd_per_million"))
        try:
            run.started = (folder / "config.yaml").stat().st_mtime
        except OSError:
            pass
        return run

    def parsed(self, path: Path, sections: tuple[str, ...] | None = None) -> Any:
        """A JSON or YAML file's content, None when absent or unreadable (a file being written),
        or when it is a symlink to somewhere outside its run folder. `sections`: of a YAML
        mapping, only these top-level keys (yaml_sections)."""
        try:
            stat = path.lstat()
            if S_ISLNK(stat.st_mode):
                if not path.resolve().is_relative_to(path.parent.resolve()):
                    return None
                stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        kept = self._parsed.get((path, sections))
        if kept is not None and kept[0] == stamp:
            return kept[1]
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix != ".yaml":
                content = json.loads(text)
            else:
                content = yaml_sections(text, sections) if sections else yaml.load(text, Loader=_LOADER)
        except (OSError, ValueError, yaml.YAMLError):
            return None
        self._parsed[(path, sections)] = (stamp, content)
        return content


def yaml_sections(text: str, names: tuple[str, ...]) -> Any:
    """The top-level keys `names` of a YAML mapping, parsing only their lines: the runs table
    needs 3 of config.yaml's ~90 lines, and building every node of 1,000 configs took seconds.
    A file not in block style (no top-level `key:` lines) is parsed whole."""
    picked, keep = [], False
    for line in text.splitlines():
        if line[:1] not in ("", " ", "\t", "#", "-"):
            keep = line.split(":", 1)[0].strip() in names
        if keep:
            picked.append(line)
    content = yaml.load("\n".join(picked), Loader=_LOADER) if picked else None
    if not isinstance(content, dict):
        content = yaml.load(text, Loader=_LOADER)
        return {k: v for k, v in content.items() if k in names} if isinstance(content, dict) else None
    return content


def _stamp(path: str) -> tuple[int, int, bool] | None:
    try:
        stat = os.lstat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, S_ISLNK(stat.st_mode)


def _status(folder: Path, metrics: dict | None, record: dict) -> tuple[str, str | None]:
    if metrics:
        return "finished", None
    if record.get("status") == "failed":
        return "failed", record.get("error")
    newest = 0.0
    for name in ("metrics.jsonl", "config.yaml", "data.json", "checkpoints"):
        try:
            newest = max(newest, (folder / name).stat().st_mtime)
        except OSError:
            continue
    return ("running" if time.time() - newest < RUNNING_WINDOW_S else "interrupted"), None


def _subfolders(folder: Path) -> list[tuple[Path, bool]]:
    """(folder, is a symlink) for each folder inside, hidden ones left out."""
    try:
        with os.scandir(folder) as entries:
            return [(Path(e.path), e.is_symlink()) for e in entries if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except OSError:
        return False


def _run_id(root: Path, folder: Path, prefix: str) -> str:
    return prefix + ("~".join(folder.relative_to(root).parts) or folder.name)


def _short_model(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    return Path(name).name if name.startswith(("/", ".", "~")) else name


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

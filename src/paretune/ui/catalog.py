"""The runs and sweeps under the folders `paretune ui` was given, found afresh on each request.

A folder given may be a run folder, a sweep folder, or a folder holding either (one level of
nesting: `runs/` with `runs/sweep-a/` and `runs/bert-lora/`). Each run gets an id made from its
path below the folder given ("sweep-a~runs~lora"): pages and data routes look ids up here and never
turn a client's text into a path, so no request can name a file outside these run folders.

A row needs three values of config.yaml's ~100 lines (task.type, method.name, model.name_or_path):
config_summary reads those lines alone, without building a YAML document (1,000 YAML parses were
most of a cold runs page). Each file's parsed form is kept while its size and modification time
stay the same, so a refresh costs a `stat` per file.
"""
from __future__ import annotations

import json
import os
import re
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
SUMMARY_KEYS = {"model": "name_or_path", "task": "type", "method": "name"}  # of config.yaml, what a row shows
SUMMARY_SECTIONS = tuple(SUMMARY_KEYS)
_UNSTATED = object()  # Catalog.parsed: the caller has no stamp of the file, so it takes one
# A value that YAML reads as itself when plain: no quotes, flow, anchors, comments or `: `. Whether it
# is a string, not null/true/a number, is the YAML resolver's call (_plain_string).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./~][A-Za-z0-9_./~+@=-]*")
_RESOLVER = yaml.resolver.Resolver()
# A summary section's first line, found by the regex engine: a Python loop over every line of
# 1,000 configs cost more than the rest of the page.
_SUMMARY_HEADER = re.compile(r"^(%s):(.*)$" % "|".join(SUMMARY_KEYS), re.MULTILINE)
_NEXT_TOP_LEVEL = re.compile(r"^[^ \t\n#-]", re.MULTILINE)
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
        if os.path.isfile(f"{folder}/config.yaml"):  # strings, not Path: pathlib's joins were a tenth of a scan
            runs.append(self.read_run(root, folder, prefix))
        elif (folder / STATE_FILE).is_file():
            sweeps.append(self._read_sweep(root, folder, prefix, runs))
        elif depth < 2:
            for child, is_link in sorted(_subfolders(folder), key=_name):
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
        for run_dir, _ in sorted(_subfolders(folder / "runs"), key=_name):
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
        run = self._read_run(root, folder, prefix, sweep, record, dict(zip(RUN_FILES, stamps[0])))
        self._runs[(base, prefix, sweep)] = (stamps, run)
        return run

    def _read_run(self, root: Path, folder: Path, prefix: str, sweep: str | None, record: dict,
                  stamps: dict[str, tuple | None]) -> RunInfo:
        """The row from the files' `stamps` (read_run's lstat of each: not taken twice)."""
        run = RunInfo(id=_run_id(root, folder, prefix), name=folder.name, path=folder, sweep=sweep)
        base = str(folder)

        def read(name: str, **how) -> Any:
            return self.parsed(f"{base}/{name}", stamp=stamps[name], **how)

        config = read("config.yaml", sections=SUMMARY_SECTIONS, read=config_summary) or {}
        run.task = (config.get("task") or {}).get("type")
        run.method = (config.get("method") or {}).get("name")
        run.base_model = _short_model((config.get("model") or {}).get("name_or_path"))
        metrics = read("metrics.json")
        run.status, run.error = _status(folder, metrics, record)
        if metrics:
            from paretune.frontier.points import ranking_metric

            run.metric = ranking_metric(metrics)
            value = (metrics.get("validation") or {}).get(run.metric)
            run.quality = float(value) if isinstance(value, (int, float)) else None
        cost = read("cost.json") or {}
        run.train_usd = _number(cost.get("usd"))
        run.wall_s = _number(cost.get("wall_s"))
        run.serve_usd_per_million = _number((read("inference.json") or {}).get("usd_per_million"))
        config_stamp = stamps["config.yaml"]
        if config_stamp is not None and not config_stamp[2]:  # a symlink's own time is not the config's
            run.started = config_stamp[1] / 1e9
        else:
            try:
                run.started = os.stat(f"{base}/config.yaml").st_mtime
            except OSError:
                pass
        return run

    def parsed(self, path: Path | str, sections: tuple[str, ...] | None = None, read=None,
               stamp: Any = _UNSTATED) -> Any:
        """A JSON or YAML file's content, None when absent or unreadable (a file being written),
        or when it is a symlink to somewhere outside its run folder. `sections`: of a YAML
        mapping, only these top-level keys (yaml_sections), or what `read` makes of its text.
        `stamp`: the file's _stamp where the caller has just taken it (None: absent)."""
        path = os.fspath(path)
        if stamp is None:
            return None
        is_link = stamp is not _UNSTATED and stamp[2]
        if stamp is _UNSTATED or is_link:  # a symlink is checked, and its target's stamp taken
            try:
                stat = os.lstat(path)
                is_link = S_ISLNK(stat.st_mode)
                if is_link:
                    if not Path(path).resolve().is_relative_to(Path(path).parent.resolve()):
                        return None
                    stat = os.stat(path)
            except OSError:
                return None
            stamp = (stat.st_size, stat.st_mtime_ns)
        else:
            stamp = stamp[:2]
        kept = self._parsed.get((path, sections))
        if kept is not None and kept[0] == stamp:
            return kept[1]
        try:
            text = _read_bytes(path, follow=is_link).decode("utf-8")
            if not path.endswith(".yaml"):
                content = json.loads(text)
            else:
                reader = read or (lambda text: yaml_sections(text, sections))
                content = reader(text) if sections else yaml.load(text, Loader=_LOADER)
        except (OSError, ValueError, yaml.YAMLError):
            return None
        self._parsed[(path, sections)] = (stamp, content)
        return content


def _read_bytes(path: str, follow: bool) -> bytes:
    """The file's bytes through a bare descriptor (a text-mode reader's set-up cost as much as the
    read). Unless it was found to be a symlink inside its folder, one is refused (O_NOFOLLOW): a
    file swapped for a link between the stat and the read is not followed out."""
    fd = os.open(path, os.O_RDONLY | (0 if follow else os.O_NOFOLLOW))
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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


def config_summary(text: str) -> Any:
    """{"model": {"name_or_path": ...}, "task": {"type": ...}, "method": {"name": ...}} of a
    config.yaml, from those lines alone where each is a one-line plain value in block style (as
    the runner writes it); anything else (quotes, flow style, a value on several lines, a key
    twice) is left to yaml_sections, which gives the same answer by parsing the sections."""
    summary: dict[str, dict] = {}
    for header in _SUMMARY_HEADER.finditer(text):
        section = header.group(1)
        if header.group(2).strip() or section in summary:
            return yaml_sections(text, SUMMARY_SECTIONS)
        end = _NEXT_TOP_LEVEL.search(text, header.end() + 1)
        value = _section_value(text[header.end():end.start() if end else len(text)], SUMMARY_KEYS[section])
        if value is _UNREAD:
            return yaml_sections(text, SUMMARY_SECTIONS)
        summary[section] = {} if value is _ABSENT else {SUMMARY_KEYS[section]: value}
    if not summary and text.lstrip()[:1] in ("{", "["):  # flow style: no `key:` lines to read
        return yaml_sections(text, SUMMARY_SECTIONS)
    return summary


_UNREAD, _ABSENT = object(), object()


def _section_value(body: str, wanted: str) -> Any:
    """`wanted`'s value among a block section's keys (its first key's indent), _ABSENT, or
    _UNREAD where the value is not a one-line plain string."""
    lines = body.split("\n")
    child_indent = 0
    for number, line in enumerate(lines):
        stripped = line.lstrip(" ")
        if not stripped or stripped[0] == "#":
            continue
        indent = len(line) - len(stripped)
        child_indent = child_indent or indent
        key, colon, value = stripped.partition(":")
        if indent != child_indent or key != wanted:
            continue
        value = value.strip()
        following = next((later for later in lines[number + 1:] if later.strip()), "")
        continues = following.startswith(" " * (indent + 1))  # a plain value may go on below
        return value if colon and not continues and _plain_string(value) else _UNREAD
    return _ABSENT


def _plain_string(value: str) -> bool:
    return (_PLAIN_VALUE.fullmatch(value) is not None
            and _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _RESOLVER.DEFAULT_SCALAR_TAG)


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
            newest = max(newest, os.stat(f"{folder}/{name}").st_mtime)
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


def _name(entry: tuple[Path, bool]) -> str:
    return entry[0].name  # siblings: their names order them as their paths do, without pathlib's cost


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

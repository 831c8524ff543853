"""Read a YAML config, apply `--set key=value` overrides, validate, report every error at once.

Relative data paths (and a model path that exists next to the config) are resolved against the
config file's folder, so a config works from any working directory; the run folder (`output.dir`)
stays relative to where the user runs the command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from paretune.config.schema import Config
from paretune.errors import ConfigError

DATA_KEYS = ("train", "validation", "test")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load and validate a config file (or only overrides when `path` is None)."""
    raw: dict[str, Any] = {}
    source = "<overrides>"
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections (model, data, ...)")
        raw = loaded or {}
        base_dir = path.resolve().parent
    raw = apply_overrides(raw, overrides or [])
    resolve_paths(raw, base_dir)
    return config_from_dict(raw, source)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for problem in err.errors():
        # Discriminated unions put the tag name in the location ('method.freeze.trainable_layers'):
        # drop it so the key reads as the user wrote it.
        loc = [str(p) for p in problem["loc"] if not _is_union_tag(problem["loc"], p)]
        key = ".".join(loc) or "<top level>"
        message = problem["msg"]
        if problem["type"] == "union_tag_invalid":  # an unknown task.type (or method.name)
            key += ".type" if loc == ["task"] else ".name" if loc == ["method"] else ""
            message = f"unknown {problem['ctx']['tag']!r}; choose one of {problem['ctx']['expected_tags']}"
        elif problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif "input" in problem and problem["type"] not in ("missing",):
            message += f" (got {problem['input']!r})"
        lines.append(f"  - {key}: {message}")
    noun = "error" if len(lines) == 1 else "errors"
    return f"{source}: {len(lines)} config {noun}:\n" + "\n".join(lines)


def _is_union_tag(loc: tuple, part: Any) -> bool:
    from paretune.methods import METHODS
    from paretune.tasks import TASKS

    registry = {"method": METHODS, "task": TASKS}.get(str(loc[0])) if loc else None
    return registry is not None and len(loc) > 1 and part in registry and loc.index(part) == 1


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings; values are parsed as YAML (numbers, booleans, lists)."""
    raw = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. training.lr=3e-5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
            node = child
        if parts == ["method", "name"] and node.get("name") not in (None, value):
            # Switching method: options written for the old method do not apply to the new one.
            node.clear()
        node[parts[-1]] = value
    return raw


def resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    data = raw.get("data")
    if isinstance(data, dict):
        for key in DATA_KEYS:
            if isinstance(data.get(key), str):
                data[key] = str(_resolve(data[key], base_dir))
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("name_or_path"), str):
        candidate = _resolve(model["name_or_path"], base_dir)
        if candidate.exists():
            model["name_or_path"] = str(candidate)
    cost = raw.get("cost")
    if isinstance(cost, dict) and isinstance(cost.get("prices_file"), str):
        cost["prices_file"] = str(_resolve(cost["prices_file"], base_dir))


def _resolve(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}

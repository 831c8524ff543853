"""Read a YAML config, apply `--set key=value` overrides, validate, report every error at once.

Relative data paths (and a model path that exists next to the config) are resolved against the
config file's folder, so a config works from any working directory; the run folder (`output.dir`)
stays relative to where the user runs the command.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from paretune.config.schema import Config
from paretune.config.union_errors import describe_union_problem, is_union_tag
from paretune.errors import ConfigError
from paretune.validation import validation_problems
from paretune.yaml_file import read_yaml_mapping

DATA_KEYS = ("train", "validation", "test")


def load_config(path: str | Path | None, overrides: list[str] | None = None, *,
                name_hint: str | None = None) -> Config:
    """Load and validate a config file (or only overrides when `path` is None). output.dir is
    settled before validation (default: runs/<config name>-<time>), so it never changes after."""
    raw: dict[str, Any] = {}
    source = "<overrides>"
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = read_yaml_mapping(path, "a mapping of sections (model, data, ...)")
        base_dir = path.resolve().parent
    raw = apply_overrides(raw, overrides or [])
    resolve_paths(raw, base_dir)
    settle_output_dir(raw, name_hint or (path.stem if path is not None else "run"))
    return config_from_dict(raw, source)


def default_output_dir(name_hint: str) -> str:
    """The run folder of a config without output.dir: runs/<name>-<time>. Computed only here."""
    return str(Path("runs") / f"{name_hint}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def settle_output_dir(raw: dict[str, Any], name_hint: str) -> dict[str, Any]:
    """Fill in output.dir in raw sections (before validation) when the user left it out."""
    output = raw.setdefault("output", {})
    if isinstance(output, dict) and not output.get("dir"):
        output["dir"] = default_output_dir(name_hint)
    return raw


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"  - {key}: {message}"
             for key, message in validation_problems(err, key=_config_key, readable=True,
                                                     special=lambda problem: describe_union_problem(Config, problem))]
    noun = "error" if len(lines) == 1 else "errors"
    return f"{source}: {len(lines)} config {noun}:\n" + "\n".join(lines)


def _config_key(loc: tuple) -> str:
    # Discriminated unions put the tag name in the location ('method.freeze.trainable_layers'):
    # drop it so the key reads as the user wrote it.
    return ".".join(str(p) for i, p in enumerate(loc) if not is_union_tag(Config, loc, i)) or "<top level>"


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
        if isinstance(data.get("general_eval"), str) and data["general_eval"] != "shipped":  # a file, not the set
            data["general_eval"] = str(_resolve(data["general_eval"], base_dir))
        knowledge = data.get("knowledge")  # a file, or a section whose entity file is found from the triples
        if isinstance(knowledge, str):
            data["knowledge"] = str(_resolve(knowledge, base_dir))
        elif isinstance(knowledge, dict) and isinstance(knowledge.get("triples"), str):
            knowledge["triples"] = str(_resolve(knowledge["triples"], base_dir))
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

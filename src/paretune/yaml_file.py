"""Reading a YAML file whose top level is a mapping: run configs, sweep files, saved run configs.

One place for the two ways such a file is wrong (not YAML; YAML but not a mapping), so every
command words them the same and names the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from paretune.errors import ConfigError


def read_yaml_mapping(path: str | Path, expected: str = "a mapping of sections", *,
                      allow_empty: bool = True) -> dict[str, Any]:
    """The file's top-level mapping ({} for an empty file when `allow_empty`); `expected` says in
    the error what the top level should have been, e.g. "a mapping (base, variants, ...)"."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if loaded is None and allow_empty:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be {expected}")
    return loaded

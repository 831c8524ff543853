"""The sweep file: a base config and the variants to run on it, checked before anything trains.

    base: sentiment.yaml          # a config file (relative to this file) or an inline mapping
    dir: runs/sweep-sentiment     # the sweep folder (default runs/<sweep file name>)
    set: {training.epochs: 1}     # overrides every variant shares
    variants:                     # a list; each entry is dotted overrides and an optional name
      - {name: lora-r8, method.name: lora, method.r: 8}
    grid:                         # every combination, crossed with each variant
      training.lr: [1.0e-4, 3.0e-4]
    search: {n_trials: 8, space: {training.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}}}
    bench_inference: true         # measure serving cost of each finished variant (or {max_seconds: 20})

Overrides are the same dotted keys as `paretune train --set`, so a variant is exactly the run
`paretune train BASE --set ...` would make. Every variant's config is built and validated up
front: a typo fails the sweep at once, not after hours of training the variants before it.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paretune.config.loading import apply_overrides, config_from_dict, format_validation_error, resolve_paths
from paretune.config.schema import Config
from paretune.errors import ConfigError
from paretune.yaml_file import read_yaml_mapping

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")
DOTTED = re.compile(r"^[a-z_]+(\.[A-Za-z0-9_]+)+$")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchParam(Options):
    """One searched key. `when` makes it conditional: `{method.name: lora}` samples `method.r`
    only in trials that chose LoRA (other methods have no rank and would reject the key)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = Field(False, description="Sample on a log scale (learning rates).")
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "SearchParam":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs 'low' < 'high'")
        return self


class SearchSpec(Options):
    n_trials: int = Field(..., ge=1, description="Trials in the study in total, over all runs and workers.")
    space: dict[str, SearchParam]
    metric: str | None = Field(None, description="Validation metric to optimise; default the task's.")
    direction: Literal["maximize", "minimize"] | None = Field(None, description="Default from the metric.")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int | None = Field(None, description="Sampler seed (give one for a repeatable single-worker study).")
    study_name: str | None = Field(None, description="Default: the sweep's name.")

    @field_validator("space", mode="before")
    @classmethod
    def _list_means_choices(cls, space: Any) -> Any:
        if isinstance(space, dict):
            return {k: {"type": "categorical", "choices": v} if isinstance(v, list) else v for k, v in space.items()}
        return space


class RayOptions(Options):
    address: str | None = Field(None, description="Existing cluster ('auto' or ray://host:10001); default local.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (default: all).")
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)
    max_concurrent: int | None = Field(None, ge=1, description="Trials at once (default: as resources allow).")


class BenchOptions(Options):
    """`bench_inference:` as a mapping: settings of `paretune bench-infer` (docs/cost.md)."""

    device: str | None = None
    price: str | float | None = Field(None, description="Price-table name or USD per device-hour.")
    batch_size: int | None = Field(None, ge=1)
    repeats: int | None = Field(None, ge=1)
    max_seconds: float | None = Field(None, gt=0)

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class EnsembleStep(Options):
    """`ensemble:`: the sweep's last step combines its best variants (sweep/combined.py)."""

    top_k: int = Field(3, ge=2, description="The best finished variants (by the sweep's metric) to combine.")
    method: Literal["average", "weighted", "vote", "stacking"] = "weighted"


class SoupStep(Options):
    """`soup:`: the sweep's last step averages its best variants' weights (sweep/combined.py)."""

    top_k: int = Field(3, ge=2, description="The best finished variants offered to the soup.")
    recipe: Literal["uniform", "greedy"] = "greedy"
    merge: Literal["average", "ties", "dare_linear"] = "average"


class SweepSpec(Options):
    base: str | dict[str, Any]
    name: str | None = None
    dir: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    variants: list[dict[str, Any]] = Field(default_factory=list)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    search: SearchSpec | None = None
    bench_inference: bool | BenchOptions = False
    ray: RayOptions = Field(default_factory=RayOptions)
    ensemble: EnsembleStep | None = Field(None, description="Last: an ensemble of the best variants (combined.py).")
    soup: SoupStep | None = Field(None, description="Last: a soup of the best variants (combined.py).")

    @model_validator(mode="after")
    def _something_to_run(self) -> "SweepSpec":
        if not (self.variants or self.grid or self.search):
            raise ValueError("give 'variants', 'grid' or 'search': there is nothing to run")
        keys = [*self.set, *self.grid, *(self.search.space if self.search else {})]
        keys += [k for v in self.variants for k in v if k != "name"]
        bad = sorted({k for k in keys if not DOTTED.match(k)})
        if bad:
            raise ValueError(f"override keys must be dotted config keys like training.lr; got {bad}")
        if any(k.startswith("output.") for k in keys):
            raise ValueError("output.* cannot be overridden: each variant's run folder is SWEEP_DIR/runs/<name> "
                             "(choose SWEEP_DIR with `dir:` or --dir)")
        if any(not values for values in self.grid.values()):
            raise ValueError("every grid key needs a non-empty list of values")
        return self


@dataclass
class Variant:
    """One run of the sweep: its folder name and the overrides that make it."""

    name: str
    overrides: dict[str, Any]
    trial: int | None = None  # Optuna trial number, for searched variants

    def override_strings(self) -> list[str]:
        return override_strings(self.overrides)


@dataclass
class Sweep:
    """A loaded sweep file: the spec, where it lives, and the base config as raw sections."""

    spec: SweepSpec
    source: Path
    folder: Path
    base_raw: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name or self.folder.name

    @property
    def bench(self) -> dict[str, Any] | None:
        """bench_inference keyword arguments, or None when the sweep does not benchmark."""
        bench = self.spec.bench_inference
        if bench is False:
            return None
        return bench.kwargs() if isinstance(bench, BenchOptions) else {}

    @property
    def runs_dir(self) -> Path:
        return self.folder / "runs"

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / name

    def variants(self) -> list[Variant]:
        return expand_variants(self.spec)

    def build_config(self, variant: Variant) -> Config:
        """The variant's full config, validated; its run folder is SWEEP_DIR/runs/<name>."""
        raw = apply_overrides(self.base_raw, override_strings(self.spec.set) + variant.override_strings())
        resolve_paths(raw, self.source.resolve().parent)  # paths the overrides add: relative to the sweep file
        raw.setdefault("output", {})
        if not isinstance(raw["output"], dict):
            raise ConfigError(f"{self.source}: variant {variant.name}: 'output' must be a section")
        raw["output"]["dir"] = str(self.run_dir(variant.name).resolve())
        return config_from_dict(raw, f"{self.source} (variant {variant.name})")

    def check_configs(self, variants: list[Variant]) -> dict[str, Config]:
        """Build every variant's config; all problems are reported together."""
        configs, problems = {}, []
        for variant in variants:
            try:
                configs[variant.name] = self.build_config(variant)
            except ConfigError as err:
                problems.append(str(err))
        if problems:
            raise ConfigError("\n".join(problems))
        return configs


def load_sweep(path: str | Path, folder: str | Path | None = None) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    raw = read_yaml_mapping(path, "a mapping (base, variants, grid, search, ...)", allow_empty=False)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    folder = Path(folder or spec.dir or Path("runs") / (spec.name or path.stem))
    return Sweep(spec=spec, source=path, folder=folder, base_raw=_load_base(spec.base, path))


def _load_base(base: str | dict, sweep_file: Path) -> dict[str, Any]:
    """The base config as raw sections with its data paths made absolute."""
    if isinstance(base, dict):
        raw, base_dir = json.loads(json.dumps(base)), sweep_file.resolve().parent
    else:
        base_path = Path(base).expanduser()
        if not base_path.is_absolute():
            base_path = sweep_file.resolve().parent / base_path
        if not base_path.is_file():
            raise ConfigError(f"{sweep_file}: base config not found: {base} (looked at {base_path})")
        raw = read_yaml_mapping(base_path)
        base_dir = base_path.resolve().parent
    resolve_paths(raw, base_dir)
    return raw


def expand_variants(spec: SweepSpec) -> list[Variant]:
    """Each listed variant (or the base alone) crossed with every grid combination; none when
    the sweep is a search only."""
    if not spec.variants and not spec.grid:
        return []
    listed = spec.variants or [{}]
    combos = [dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())]
    variants, seen = [], {}
    for entry in listed:
        entry = dict(entry)
        given = entry.pop("name", None)
        for combo in combos:
            overrides = {**entry, **combo}
            name = _join(str(given), _auto_name(combo)) if given is not None else _auto_name(overrides)
            _check_name(name, given, seen)
            key = json.dumps(overrides, sort_keys=True, default=str)
            if key in seen.values():
                raise ConfigError(f"variants {_first(seen, key)} and {name} have the same overrides: {overrides}")
            name = _unique(name, seen)
            seen[name] = key
            variants.append(Variant(name, overrides))
    return variants


def override_strings(overrides: dict[str, Any]) -> list[str]:
    """`key=value` strings for apply_overrides; method.name goes first because switching
    method clears the method section, which would drop method options set before it."""
    ordered = sorted(overrides.items(), key=lambda item: item[0] != "method.name")
    # Strings pass as written, so `1e-4` is read exactly as `--set training.lr=1e-4` reads it.
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in ordered]


def _auto_name(overrides: dict[str, Any]) -> str:
    parts = []
    for key, value in overrides.items():
        leaf = key.rsplit(".", 1)[-1]
        if key == "method.name":
            parts.append(str(value))
        elif key == "model.name_or_path":
            parts.append(Path(str(value)).name)
        else:
            parts.append(f"{leaf}{_short(value)}")
    return _sanitize("-".join(parts)) or "base"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(map(str, value))
    return str(value)


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")


def _join(name: str, suffix: str) -> str:
    return f"{name}-{suffix}" if suffix != "base" else name


def _check_name(name: str, given: Any, seen: dict[str, str]) -> None:
    if given is None:
        return
    if not NAME.match(name):
        raise ConfigError(f"variant name {given!r}: use letters, digits and . _ - = + only (it names a folder)")
    if name in seen:
        raise ConfigError(f"two variants are named {name!r}: each variant needs its own name (its folder)")


def _unique(name: str, seen: dict[str, str]) -> str:
    candidate, n = name, 2
    while candidate in seen:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _first(seen: dict[str, str], key: str) -> str:
    return next(name for name, k in seen.items() if k == key)

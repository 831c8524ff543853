"""The price table: dollars per device-hour, with where each figure came from.

The packaged table (prices.yaml) holds on-demand list prices with their source and date. A
run's price is, in order: `--price` / `cost.usd_per_hour` (a number you give), `cost.price` (a
row by name), else the table's default row for the detected device: the first whose `gpu`
pattern matches the GPU's name, or for a CPU the smallest instance with enough vCPUs.
"""
from __future__ import annotations

import logging
import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from paretune.config.schema import CostConfig
from paretune.cost.device import Device
from paretune.errors import ParetuneError
from paretune.validation import dotted_key, validation_problems

log = logging.getLogger("paretune")

PACKAGED_TABLE = Path(__file__).with_name("prices.yaml")


class Price(BaseModel):
    """One row of a price table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    device: Literal["gpu", "cpu"]
    usd_per_hour: float = Field(gt=0, description="Per GPU for GPU rows; per instance for CPU rows.")
    provider: str
    instance: str
    source: str = Field(description="Where the figure was read: a URL, or who set it.")
    date: str = Field(description="When the price was listed at this value (YYYY-MM or YYYY-MM-DD).")
    gpu: str | None = Field(None, description="Regex searched in the CUDA device name.")
    vcpus: int | None = Field(None, ge=1)
    default: bool = False

    @model_validator(mode="after")
    def _matchable(self) -> "Price":
        if self.default and self.device == "gpu" and not self.gpu:
            raise ValueError("a default GPU row needs a `gpu` pattern to match device names")
        if self.default and self.device == "cpu" and not self.vcpus:
            raise ValueError("a default CPU row needs `vcpus`")
        return self

    def as_dict(self) -> dict:
        """What cost.json and inference.json record."""
        return {"name": self.name, "usd_per_hour": self.usd_per_hour, "source": self.source,
                "date": self.date, "provider": self.provider, "instance": self.instance}


def load_table(prices_file: str | Path | None = None) -> list[Price]:
    """The packaged rows, with a user's file's rows first (a user row wins a name or a match)."""
    rows = _read_table(PACKAGED_TABLE)
    if prices_file:
        user = _read_table(Path(prices_file))
        names = {row.name for row in user}
        rows = user + [row for row in rows if row.name not in names]
    return rows


def _read_table(path: Path) -> list[Price]:
    if not path.is_file():
        raise ParetuneError(f"price table {path} not found (cost.prices_file)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParetuneError(f"price table {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("prices"), list):
        raise ParetuneError(f"price table {path}: expected a top-level `prices:` list of rows (docs/cost.md)")
    rows = []
    for i, row in enumerate(raw["prices"]):
        try:
            rows.append(Price.model_validate(row))
        except ValidationError as err:
            problems = "; ".join(f"{key}: {message}" for key, message in
                                 validation_problems(err, key=lambda loc: dotted_key(loc, empty="row")))
            label = row.get("name", f"#{i + 1}") if isinstance(row, dict) else f"#{i + 1}"
            raise ParetuneError(f"price table {path}, row {label}: {problems}") from None
    return rows


def find_price(table: list[Price], name: str) -> Price:
    for row in table:
        if row.name == name:
            return row
    known = ", ".join(row.name for row in table)
    raise ParetuneError(
        f"unknown price '{name}'. Known prices: {known}. Give one of these names, a number of "
        "dollars per device-hour (--price 2.5, cost.usd_per_hour), or your own rows in cost.prices_file"
    )


def default_price(table: list[Price], device: Device) -> Price | None:
    """The table's default for this device, or None when no row covers it."""
    if device.type == "cuda":
        for row in table:
            if row.default and row.device == "gpu" and re.search(row.gpu, device.name, re.IGNORECASE):
                return row
        return None
    cpu_rows = sorted((row for row in table if row.default and row.device == "cpu"), key=lambda r: r.vcpus)
    for row in cpu_rows:
        if row.vcpus >= device.vcpus:
            return row
    return cpu_rows[-1] if cpu_rows else None  # more cores than any row: the largest listed


def custom_price(usd_per_hour: float, source: str) -> Price:
    device = "cpu"  # unused for a custom price: it is never matched against a device
    return Price(name="custom", device=device, usd_per_hour=usd_per_hour, provider="user",
                 instance="as given", source=source, date=date.today().isoformat())


def parse_price_option(text: str) -> str | float:
    """`--price` takes a table name or a number of dollars per device-hour."""
    try:
        value = float(text)
    except ValueError:
        return text.strip()
    if value <= 0:
        raise ParetuneError(f"--price {text}: a price must be a positive number of dollars per hour, or a name")
    return value


def resolve_price(config: CostConfig | None, device: Device, override: str | float | None = None,
                  ) -> Price | None:
    """The price this run uses; None (with a warning) when nothing is given and no row matches."""
    config = config or CostConfig()
    table = load_table(config.prices_file)
    if isinstance(override, (int, float)):
        return custom_price(float(override), "--price")
    if isinstance(override, str):
        return find_price(table, override)
    if config.usd_per_hour is not None:
        return custom_price(config.usd_per_hour, "cost.usd_per_hour (run config or --price)")
    if config.price is not None:
        return find_price(table, config.price)
    chosen = default_price(table, device)
    if chosen is None:
        log.warning("no price in the table for %s (%s): dollars will be null. Set cost.price, "
                    "cost.usd_per_hour or --price (docs/cost.md)", device.name, device.type)
    return chosen

"""The price table: packaged rows, defaults by device, names, overrides and clear errors."""
from __future__ import annotations

import pytest

from paretune.cli.train import price_overrides
from paretune.config.loading import apply_overrides, config_from_dict
from paretune.config.schema import CostConfig
from paretune.cost.device import Device
from paretune.cost.prices import (
    default_price,
    find_price,
    load_table,
    parse_price_option,
    resolve_price,
)
from paretune.errors import ConfigError, ParetuneError

CPU2 = Device("cpu", "AMD EPYC", 1, 2)


def gpu(name: str) -> Device:
    return Device("cuda", name, 1, 16)


def test_packaged_table_rows_say_where_and_when():
    table = load_table()
    names = [row.name for row in table]
    assert len(names) == len(set(names))
    for row in table:
        assert row.source.startswith("https://") and len(row.date) >= 7 and row.usd_per_hour > 0
    assert {"gpu", "cpu"} == {row.device for row in table}


@pytest.mark.parametrize("device_name, expected", [
    ("NVIDIA H100 80GB HBM3", "lambda-h100-sxm"),
    ("NVIDIA H100 PCIe", "lambda-h100-pcie"),
    ("NVIDIA H200", "coreweave-h200"),
    ("NVIDIA GH200 480GB", "lambda-gh200"),
    ("NVIDIA A100-SXM4-80GB", "lambda-a100-80gb"),
    ("NVIDIA A100-PCIE-40GB", "lambda-a100-40gb"),
    ("NVIDIA A10G", "aws-g5.xlarge"),
    ("NVIDIA A10", "lambda-a10"),
    ("NVIDIA L4", "aws-g6.xlarge"),
    ("NVIDIA L40S", "aws-g6e.xlarge"),
    ("Tesla T4", "aws-g4dn.xlarge"),
    ("Tesla V100-SXM2-16GB", "aws-p3.2xlarge"),
])
def test_default_price_matches_the_gpu_name(device_name, expected):
    assert default_price(load_table(), gpu(device_name)).name == expected


def test_unlisted_gpu_has_no_default_and_no_dollars():
    device = gpu("NVIDIA GeForce RTX 4090")
    assert default_price(load_table(), device) is None
    assert resolve_price(CostConfig(), device) is None


@pytest.mark.parametrize("vcpus, expected", [(1, "aws-m7i.large"), (2, "aws-m7i.large"),
                                             (3, "aws-m7i.xlarge"), (16, "aws-m7i.4xlarge"),
                                             (512, "aws-m7i.8xlarge")])
def test_cpu_default_is_the_smallest_instance_with_enough_cores(vcpus, expected):
    assert default_price(load_table(), Device("cpu", "x", 1, vcpus)).name == expected


def test_price_by_name_and_unknown_name_lists_the_known_ones():
    assert find_price(load_table(), "gcp-n2-standard-4").usd_per_hour == pytest.approx(0.1942)
    with pytest.raises(ParetuneError) as err:
        find_price(load_table(), "aws-h100-cheap")
    message = str(err.value)
    assert "unknown price 'aws-h100-cheap'" in message
    assert "lambda-h100-sxm" in message and "aws-m7i.large" in message and "--price" in message


def test_resolution_order():
    assert resolve_price(CostConfig(), CPU2).name == "aws-m7i.large"  # default by device
    assert resolve_price(CostConfig(price="aws-c7i.large"), CPU2).name == "aws-c7i.large"
    custom = resolve_price(CostConfig(usd_per_hour=0.42), CPU2)
    assert (custom.name, custom.usd_per_hour, custom.source) == ("custom", 0.42,
                                                                 "cost.usd_per_hour (run config or --price)")
    # --price beats the config, as a name or as a number.
    assert resolve_price(CostConfig(usd_per_hour=0.42), CPU2, override="gcp-n2-standard-2").name == (
        "gcp-n2-standard-2")
    assert resolve_price(CostConfig(price="aws-c7i.large"), CPU2, override=1.5).usd_per_hour == 1.5
    with pytest.raises(ParetuneError, match="Known prices"):
        resolve_price(CostConfig(price="nope"), CPU2)


def test_user_prices_file_adds_and_replaces_rows(tmp_path):
    table = tmp_path / "prices.yaml"
    table.write_text(
        "prices:\n"
        "  - {name: aws-m7i.large, device: cpu, vcpus: 2, usd_per_hour: 0.05, provider: AWS,\n"
        "     instance: m7i.large reserved, source: our contract, date: 2026-01, default: true}\n"
        "  - {name: onprem-a100, device: gpu, gpu: A100, usd_per_hour: 0.9, provider: us,\n"
        "     instance: rack 3, source: finance team, date: 2026-01, default: true}\n"
    )
    config = CostConfig(prices_file=str(table))
    assert resolve_price(config, CPU2).usd_per_hour == 0.05  # same name: the user's row wins
    assert resolve_price(config, gpu("NVIDIA A100-SXM4-80GB")).name == "onprem-a100"  # matched first
    assert resolve_price(config, gpu("NVIDIA H100 PCIe")).name == "lambda-h100-pcie"  # the rest stay


def test_bad_prices_file_names_file_and_row(tmp_path):
    table = tmp_path / "prices.yaml"
    table.write_text("prices:\n  - {name: mine, device: gpu, usd_per_hour: -1, provider: x, instance: y,"
                     " source: z, date: 2026-01}\n")
    with pytest.raises(ParetuneError, match=r"prices.yaml, row mine: usd_per_hour"):
        load_table(table)
    with pytest.raises(ParetuneError, match="not found"):
        load_table(tmp_path / "missing.yaml")


def test_price_option_and_config_section():
    assert parse_price_option("2.5") == 2.5
    assert parse_price_option("aws-m7i.large") == "aws-m7i.large"
    with pytest.raises(ParetuneError, match="positive"):
        parse_price_option("-3")
    raw = {"data": {"train": "t.csv"}, "cost": {"usd_per_hour": 3.0}}
    # --price NAME on a config that set a number replaces it (and the reverse): no both-set error.
    assert config_from_dict(apply_overrides(raw, price_overrides("aws-c7i.large"))).cost == CostConfig(
        price="aws-c7i.large")
    raw = {"data": {"train": "t.csv"}, "cost": {"price": "aws-c7i.large"}}
    assert config_from_dict(apply_overrides(raw, price_overrides("0.7"))).cost == CostConfig(usd_per_hour=0.7)
    with pytest.raises(ConfigError, match="not both"):
        config_from_dict({"data": {"train": "t.csv"}, "cost": {"price": "a", "usd_per_hour": 1}})

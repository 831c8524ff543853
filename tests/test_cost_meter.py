"""cost.json after a real (tiny) training run: every key, consistent numbers, the card's price."""
from __future__ import annotations

import json

import pytest
import typer
import yaml
from typer.testing import CliRunner

import paretune
from paretune.cli import train as train_command
from paretune.errors import ParetuneError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEYS = {
    # before the cost meter
    "device", "device_count", "precision", "phases_s", "wall_s", "device_hours", "train_samples",
    "train_tokens", "train_padded_tokens", "padding_fraction", "train_samples_per_s",
    "train_tokens_per_s", "peak_host_rss_mib", "peak_device_mib",
    # the cost meter's
    "device_name", "vcpus", "flops", "energy_kwh", "energy_source", "price", "usd",
}


def test_cost_json_after_a_tiny_run_priced_with_the_option(tiny_config, tmp_path):
    tiny_config["training"] |= {"max_steps": 6, "epochs": 1}
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config))
    app = typer.Typer()
    train_command.register(app)
    result = CliRunner().invoke(app, [str(config_file), "--price", "0.5"])
    assert result.exit_code == 0, result.output

    run_dir = tmp_path / "run"
    cost = json.loads((run_dir / "cost.json").read_text())
    assert KEYS <= set(cost)
    assert cost["device"] == "cpu" and cost["device_name"] and cost["device_count"] == 1
    assert set(cost["phases_s"]) >= {"data_prep_s", "train_s", "final_eval_s", "setup_s"}
    assert cost["wall_s"] == pytest.approx(sum(cost["phases_s"].values()), abs=0.01)
    assert cost["price"]["name"] == "custom" and cost["price"]["usd_per_hour"] == 0.5
    assert cost["price"]["source"] == "cost.usd_per_hour (run config or --price)"
    assert cost["usd"] == pytest.approx(cost["device_hours"] * 0.5, rel=0.01)  # both rounded
    assert cost["energy_kwh"] is None and cost["energy_source"] is None  # no NVML on a CPU

    flops, metrics = cost["flops"], json.loads((run_dir / "metrics.json").read_text())
    assert flops["tokens"] == cost["train_padded_tokens"] > 0
    assert flops["train"] == flops["flops_per_token"] * flops["tokens"]
    assert flops["flops_per_token"] == 6 * flops["trainable_params"]  # full fine-tuning
    # metrics count embedding tables as parameters; the FLOP split keeps them apart.
    assert flops["trainable_params"] + flops["frozen_params"] + flops["embedding_params"] == metrics["total_params"]
    assert flops["frozen_params"] == 0  # full fine-tuning
    train_s = cost["phases_s"]["train_s"]
    assert flops["achieved_flops_per_s"] == pytest.approx(flops["train"] / train_s, rel=0.01)
    if flops["peak_flops_per_s"] is not None:  # a CPU whose /proc/cpuinfo names FMA and a clock
        assert flops["share_of_peak"] == pytest.approx(flops["achieved_flops_per_s"] / flops["peak_flops_per_s"], rel=0.01)
        assert flops["peak_basis"].startswith("fp32 FMA:")

    card = (run_dir / "README.md").read_text()
    assert "## Cost" in card and "$0.5 per device-hour, as given in cost.usd_per_hour" in card
    assert "paretune bench-infer" in card


def test_unknown_price_fails_before_any_work(tiny_config, tmp_path):
    tiny_config["cost"] = {"price": "no-such-gpu"}
    with pytest.raises(ParetuneError, match=r"unknown price 'no-such-gpu'. Known prices: .*aws-m7i.large"):
        paretune.finetune(tiny_config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flags", "lanes"), [("fpu sse avx avx2 fma", 8), ("avx2 fma avx512f", 16), ("sse avx", None)])
def test_the_cpu_peak_is_cores_pipes_lanes_and_the_clock(flags, lanes):
    from paretune.cost.hardware import CPU_FMA_PIPES, cpu_peak

    cpuinfo = "".join(f"processor\t: {i}\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n\n" for i, mhz in enumerate((2000.0, 2500.0)))
    peak = cpu_peak(cpuinfo, cores=2)
    if lanes is None:  # no fused multiply-add: no peak is claimed
        assert peak is None
        return
    assert peak.flops_per_s == pytest.approx(2 * CPU_FMA_PIPES * lanes * 2 * 2.5e9)
    assert f"{lanes} lanes" in peak.basis and "2.5 GHz" in peak.basis
    assert cpu_peak("flags : fma\n", cores=2) is None  # no clock named

"""The pre-flight plan: rows per method and device, counted memory, and the plan in cost.json."""
from __future__ import annotations

import json
import re

import pytest

from paretune.errors import ConfigError


@pytest.fixture()
def config(tiny_config):
    from paretune.runner import settled_config

    return settled_config(tiny_config)


def test_plan_rows_measured_here_scaled_elsewhere(config, one_torch_thread):
    from paretune.cost.calibrate import plan_run

    from paretune.methods.lora import LoraOptions

    # Rank 2: the default rank 16 is this tiny body's width, not the few adapter weights it is meant to be.
    config = config.model_copy(update={"method": LoraOptions(r=2, alpha=4)})
    rows = plan_run(config, ["full", "lora"], ["cpu", "a100", "h100"], steps=3)
    by = {(r["method"], r["device"]): r for r in rows}
    assert set(by) == {(m, d) for m in ("full", "lora") for d in ("cpu", "a100", "h100")}
    assert by["full", "cpu"]["basis"] == "measured" and by["full", "a100"]["basis"] == "scaled"
    for row in rows:
        assert row["time_s"] > row["train_s"] > 0 and row["fits"] is True
        assert row["time_s"] == pytest.approx(row["train_s"] + row["eval_s"] + row["setup_s"], abs=0.05)
    # This machine's peak memory is measured at the largest batches: at least what is resident.
    here = by["full", "cpu"]
    # (1 MiB of slack: the kernel's resident-page counters are batched per thread, so a high-water
    # mark and a later resident reading can disagree by a few pages; one CI run saw 0.1 MiB.)
    assert here["peak_memory_mib"] >= here["memory"]["process_mib"] - 1 and "measured" in here["how"]
    # LoRA keeps gradients and AdamW moments for a few adapter weights only.
    assert by["lora", "a100"]["memory"]["optimizer_mib"] < by["full", "a100"]["memory"]["optimizer_mib"] / 10
    assert by["full", "h100"]["train_s"] < by["full", "a100"]["train_s"]  # same work, faster device
    assert by["full", "a100"]["usd"] > 0  # the price table's default A100 row


def test_memory_is_counted_per_part():
    from paretune.cost.plan import MIB, Workload, memory_parts

    work = Workload(method="full", steps=10, steps_per_epoch=10, epochs=1, run_padded_tokens=1000,
                    run_samples=100, largest_batch_tokens=256, longest_row=32, evaluations=1,
                    eval_padded_tokens=100, flops_per_token=6, forward_flops_per_token=2,
                    total_params=2**20, trainable_params=2**19, activation_layers=2, hidden=32, heads=2,
                    optimizer="adamw")
    parts = memory_parts(work, activation_bytes=2)
    assert parts["weights_mib"] == 4 and parts["gradients_mib"] == 2 and parts["optimizer_mib"] == 4
    assert parts["activations_mib"] == round(256 * 2 * (34 * 32 + 5 * 2 * 32) / MIB, 1)


def test_unknown_device_is_refused(config):
    from paretune.cost.calibrate import plan_run

    with pytest.raises(ConfigError, match="unknown device"):
        plan_run(config, ["full"], ["cpu", "tpu9"])


def test_plan_command_json(tiny_config, tmp_path, one_torch_thread):
    import yaml
    from typer.testing import CliRunner

    from paretune.cli import _register, app

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    _register()
    gpus = ["a10g", "a100", "h100", "h200"]
    result = CliRunner().invoke(app, ["plan", str(path), "--methods", "freeze,lora", "--devices",
                                      ",".join(["cpu", *gpus]), "--steps", "2", "--json"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output.strip().splitlines()[-1])
    assert set(planned) == {f"{m}/{d}" for m in ("freeze", "lora") for d in ["cpu", *gpus]}
    for key, row in planned.items():
        assert row["time_s"] > 0 and row["peak_memory_mib"] > 0 and isinstance(row["fits"], bool), key
        assert row["usd"] is None or row["usd"] > 0
        if key.endswith("/cpu"):
            assert row["basis"] == "measured" and "measured" in row["how"]
        else:  # GPU rows say they come from the FLOP model and published peaks, not calibration
            assert row["basis"] == "scaled" and "not calibrated" in row["how"] and "published" in row["how"]
    assert all(planned[f"freeze/{g}"]["usd"] > 0 for g in gpus)  # the price table has every one
    assert "scaled: not calibrated" in result.output and "published peak" in result.output
    # The largest context per device: the tiny model's 64 positions fit anywhere (cost/context.py).
    for key, row in planned.items():
        assert row["max_context"]["tokens"] == 64 and row["max_context"]["limit"] == "model positions", key
    assert "max ctx" in result.output and "64 x16+" in result.output  # 16 rows a batch (batch_size)


def test_plan_sizes_the_context_for_the_memory_asked(tiny_config, tmp_path, one_torch_thread):
    from paretune.cost.calibrate import plan_run
    from paretune.runner import settled_config

    config = settled_config(tiny_config)
    # Below the process's own resident memory nothing fits; the figure says so rather than guessing.
    row, = plan_run(config, ["freeze"], ["cpu"], steps=2, context_memory_mib=1.0)
    assert row["max_context"]["tokens"] == 0 and row["max_context"]["memory_mib"] == 1
    counted = row["max_context"]["model"]
    assert counted["bytes_per_token"] > 0 and counted["vocab"] == 0  # a classifier: no LM head term


def test_train_records_its_plan_beside_the_actuals(tiny_config, one_torch_thread):
    from paretune.runner import finetune

    tiny_config["training"].update(epochs=2)
    run = finetune(tiny_config)
    plan = run.cost["plan"]
    assert plan["method"] == "full" and re.match(r"first \d+ timed steps", plan["basis"])
    assert plan["train_s"] > 0 and plan["peak_memory_mib"] > 0 and plan["fits"] is True
    assert plan["steps"] == run.metrics["steps"]
    assert json.loads((run.path / "cost.json").read_text())["plan"] == plan

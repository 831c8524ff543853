"""How close `paretune plan` comes to what training really takes, on this machine.

For each method (full, lora, freeze) and each data size, in fresh processes: `paretune plan
--json` (a few timed steps), then `paretune train --json`; compares the plan's run time, training
time and peak memory with cost.json's wall_s, phases_s.train_s and peak_host_rss_mib, and also
the plan the training run recorded itself from its first steps (cost.json "plan").

    flock /tmp/cpu.lock python bench/plan_accuracy.py [--rows 500,1500] [--methods full,lora,freeze]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def _config(folder: Path, rows: int) -> Path:
    lines = (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "train.tsv").write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    val = (SST2 / "validation.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "validation.tsv").write_text("\n".join(val[:301]) + "\n", encoding="utf-8")
    path = folder / "plan.yaml"
    path.write_text(f"""data:
  train: train.tsv
  validation: validation.tsv
  text_column: sentence
  max_length: 64
  cache_dir: {folder / 'cache'}
training:
  epochs: 1
""", encoding="utf-8")
    return path


def _last_json(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "paretune", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="500,1500")
    parser.add_argument("--methods", default="full,lora,freeze")
    opts = parser.parse_args()
    print("| method | rows | plan run s | actual wall s | err | plan train s | actual train s | err | "
          "plan peak MiB | actual peak RSS MiB | err | counted MiB | err | in-run plan train s | err |")
    print("|" + " --- |" * 15)
    for rows in [int(r) for r in opts.rows.split(",")]:
        for method in opts.methods.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                config = _config(Path(tmp), rows)
                plan = _last_json(["plan", str(config), "--methods", method, "--devices", "cpu", "--json"])
                row = plan[f"{method}/cpu"]
                run = _last_json(["train", str(config), "--json", "--set", f"method.name={method}",
                                  "--set", f"output.dir={tmp}/run"])
                cost = json.loads((Path(run["run"]) / "cost.json").read_text())
                own = cost.get("plan") or {}
                counted = (row.get("memory") or {}).get("counted_peak_mib")  # the model alone, unmeasured
                actual_train = cost["phases_s"]["train_s"]
                cells = [method, rows,
                         *_pair(row["time_s"], cost["wall_s"]), *_pair(row["train_s"], actual_train),
                         *_pair(row["peak_memory_mib"], cost["peak_host_rss_mib"]),
                         counted, _err(counted, cost["peak_host_rss_mib"]),
                         own.get("train_s"), _err(own.get("train_s"), actual_train)]
                print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def _pair(planned: float, actual: float) -> list:
    return [round(planned, 1), round(actual, 1), _err(planned, actual)]


def _err(planned: float | None, actual: float) -> str:
    return "-" if planned is None else f"{(planned - actual) / actual:+.0%}"


if __name__ == "__main__":
    main()

"""`paretune compress RUN --method M [--output DIR] [method options] [--recover-epochs N] [--json]`."""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Optional

import typer
from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from paretune.cli.settings_options import settings_options
from paretune.errors import ParetuneError
from paretune.remote_code import FLAG_HELP

METHOD_HELP = ("int8-dynamic, onnx, onnx-int8, onnx-int8-static (quantize/export), prune-magnitude, prune-heads "
               "(BERT-style), drop-layers (prune), fp16, bf16 (cast for GPUs). Generative runs: int8-dynamic, "
               "fp16, bf16, prune-magnitude, drop-layers")


def method_option_flags() -> type[BaseModel]:
    """Every compression method's options as one model of optional flags, made from the registry.

    A flag shared by several methods (--opset) is one option; its help names the methods that take
    it. All default to None (not given), so each method's own default applies and a flag meant for
    another method is an error (`_options_for`), never silently ignored.
    """
    from paretune.compression import METHODS

    owners: dict[str, list[str]] = {}
    fields: dict[str, FieldInfo] = {}
    defaults: dict[str, set] = {}
    for method_name, method in METHODS.items():
        for name, field in method.options.model_fields.items():
            owners.setdefault(name, []).append(method_name)
            fields.setdefault(name, field)
            defaults.setdefault(name, set()).add(None if field.is_required() else repr(field.default))
    flags = {}
    for name, field in fields.items():
        shown = defaults[name] - {None, "None"}
        default = f" (default {shown.pop()})" if len(shown) == 1 else " (default: each method's own)" if shown else ""
        extra = {"off_flag": OFF_FLAGS[name]} if name in OFF_FLAGS else None
        flags[name] = (Optional[_strip_none(field.annotation)],
                       Field(None, description=f"{', '.join(owners[name])}: {field.description}{default}",
                             json_schema_extra=extra))
    return create_model("CompressMethodFlags", **flags)


OFF_FLAGS = {"per_channel": "per-tensor"}  # bools whose "off" has a better name than --no-...


def _strip_none(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(annotation) else annotation


@settings_options(method_option_flags())
def compress(
    run: Path = typer.Argument(..., help="Finished run folder (paretune train, distill or compress)."),
    method: str = typer.Option(..., "--method", "-m", help=METHOD_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="New run folder; default RUN-METHOD beside RUN."),
    recover_epochs: float = typer.Option(
        0, help="Pruning and drop-layers: fine-tune this many epochs afterwards on the parent's data."),
    set_: list[str] = typer.Option(
        [], "--set", "-s", metavar="KEY=VALUE", help="Recovery training override, e.g. --set training.lr=5e-5"
    ),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time parent and result (bench-infer)."),
    bench_seconds: float = typer.Option(20.0, help="Rough time limit of timing each of parent and result "
                                        "(so about twice this in all, each timing logged as it starts)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=FLAG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the compression entry as JSON on the last line."),
    settings: dict = None,
) -> None:
    """Make a smaller or faster model from a finished run, written as a new run folder."""
    from paretune.compression.run import compress_run
    from paretune.compression.run_writer import BenchSettings
    from paretune.logs import setup_logging

    setup_logging()
    options = _options_for(method, {k: v for k, v in settings.items() if v is not None})
    if set_ and not recover_epochs:
        raise ParetuneError("--set changes the recovery fine-tune: give --recover-epochs too")
    folder = compress_run(run, method, options, output=output, recover_epochs=recover_epochs, overrides=set_,
                          bench=BenchSettings(enabled=bench, max_seconds=bench_seconds), overwrite=overwrite,
                          trust_remote_code=trust_remote_code)
    metrics = json.loads((folder / "metrics.json").read_text())
    if as_json:
        print(json.dumps({"run": str(folder), **metrics["compression"]}))
        return
    print(summary(folder, metrics))


def _options_for(method: str, given: dict) -> dict:
    """Only the options this method has; naming any other is an error, not silently ignored."""
    from paretune.compression import get_method

    fields = get_method(method).options.model_fields
    foreign = [k for k in given if k not in fields]
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        takes = ", ".join("--" + k.replace("_", "-") for k in fields) or "no options"
        raise ParetuneError(f"{flags} does not apply to --method {method} (it takes {takes})")
    return given


def summary(folder: Path, metrics: dict) -> str:
    from paretune.compression.agreement import agreement_lines

    change, checks = metrics["compression"]["change"], metrics["compression"].get("checks", {})
    before, after = change["parent"], change["value"]
    lines = [f"{metrics['compression']['method']}: {folder}", *agreement_lines(change, checks)]
    lines.append(f"  size: {before['size_mib']:.1f} -> {after['size_mib']:.1f} MiB (x{change['size_ratio']})")
    if change.get("speedup"):
        lines.append(f"  latency p50 (batch 1): {before['latency_p50_ms']:.2f} -> {after['latency_p50_ms']:.2f} ms "
                     f"({change['speedup']}x faster)")
    for key, value in checks.items():
        if key != "max_abs_logit_diff" and not isinstance(value, (dict, list)):  # that one: agreement_lines
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)

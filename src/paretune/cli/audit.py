"""`paretune audit CONFIG|TRAIN_FILE [--validation F] [--test F] [--out DIR] [--write-clean OUT [--fix labels] [--max-labels K]] [--json]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from paretune.audit.run import AuditOptions
from paretune.cli.settings_options import settings_options

_CONFIG_SUFFIXES = (".yaml", ".yml")


@settings_options(AuditOptions)
def audit(
    source: Path = typer.Argument(..., help="A run config (YAML), or the training data file itself."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Validation file (sets data.validation)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test file (sets data.test)."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                   help="Config override, e.g. --set data.text_column=sentence"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder; default runs/audit-<name>-<time>."),
    write_clean: Optional[Path] = typer.Option(
        None, "--write-clean", help="Write a copy of the training file without the flagged rows here."),
    drop: list[str] = typer.Option(["labels", "duplicates", "leaks", "lengths"], "--drop",
                                   help="Findings whose rows --write-clean leaves out (repeatable): labels, "
                                   "duplicates, leaks, lengths, outliers."),
    fix: list[str] = typer.Option([], "--fix", help="With --write-clean: `--fix labels` keeps suspect-label rows "
                                  "and gives them the audit's suggested label instead of dropping them."),
    max_labels: Optional[int] = typer.Option(
        None, "--max-labels", min=0, help="With --write-clean: drop (or fix) only the K most suspect labels, "
        "not every flagged one; a small set loses fewer correct but hard rows."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON on the last line."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages too (to stderr)."),
    settings: dict = None,
) -> None:
    """Look for mislabeled rows, duplicates, leaks, outliers, odd lengths and label shift in the data."""
    import json
    import sys

    from pydantic import ValidationError

    from paretune.audit.report import check_report_folder, write_report
    from paretune.audit.run import audit as run_audit
    from paretune.config import load_config
    from paretune.config.loading import default_output_dir
    from paretune.errors import ParetuneError
    from paretune.logs import setup_logging
    from paretune.validation import validation_problems

    setup_logging(verbose)
    try:
        options = AuditOptions(**settings)
    except ValidationError as err:
        raise ParetuneError("audit: " + "; ".join(message for _, message in validation_problems(err))) from None
    if max_labels is not None and write_clean is None:
        raise ParetuneError("--max-labels limits the clean copy: give --write-clean OUT too")
    overrides = [*set_, *([f"data.validation={validation}"] if validation else []),
                 *([f"data.test={test}"] if test else [])]
    if source.suffix.lower() in _CONFIG_SUFFIXES:
        config = load_config(source, overrides)
    else:
        config = load_config(None, [f"data.train={source}", *overrides], name_hint=source.stem)
    folder = out or Path(default_output_dir(f"audit-{source.stem}"))
    check_report_folder(folder)  # before the audit's minutes, not after
    findings = run_audit(config, options)
    paths = write_report(findings, folder)
    if write_clean is not None:
        findings["clean_copy"] = _clean_copy(findings, config, write_clean, drop, fix, max_labels)
        paths["json"].write_text(json.dumps(findings, indent=2) + "\n")
    _say(findings, paths["markdown"], sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps({**findings, "report": str(folder)}))


def _say(findings: dict, markdown: Path, stream) -> None:
    """The one-line summary, and what the clean copy kept, for a person (stderr under --json)."""
    from paretune.audit.report import summary

    counts = ", ".join(f"{check} {n}" for check, n in summary(findings).items())
    print(f"audit: {counts}; report {markdown}", file=stream)
    warning = (findings.get("label_probabilities") or {}).get("warning")
    if warning:
        print(f"WARNING: {warning}.", file=stream)
    if "clean_copy" in findings:
        c = findings["clean_copy"]
        print(f"clean copy: {c['file']} ({c['rows_kept']} rows kept, {c['rows_dropped']} dropped, "
              f"{c['rows_relabelled']} relabelled)", file=stream)


def _clean_copy(findings: dict, config, out: Path, drop: list[str], fix: list[str], max_labels: int | None) -> dict:
    """Write the clean copy of the training file; what it did, for the report."""
    from paretune.audit.clean import labels_to_fix, rows_to_drop, write_clean
    from paretune.errors import ParetuneError

    train = findings["files"]["train"]["file"]
    fmt = config.data.format or _format(train)
    if set(fix) - {"labels"}:
        raise ParetuneError(f"--fix {', '.join(sorted(set(fix) - {'labels'}))}: only `--fix labels` exists")
    if max_labels is not None:  # suspect_labels is ranked most-suspect first
        findings = {**findings, "suspect_labels": (findings.get("suspect_labels") or [])[:max_labels]}
    drop = [d for d in drop if not (d == "labels" and fix)]
    dropped = rows_to_drop(findings, drop, train)
    relabel = {r: s for r, s in labels_to_fix(findings, train).items() if r not in dropped} if fix else {}
    kept = write_clean(Path(train), fmt, dropped, out, config.data.encoding, relabel, config.data.label_column)
    return {"file": str(out), "rows_kept": kept, "rows_dropped": len(dropped), "dropped_for": list(drop),
            "rows_relabelled": len(relabel), "max_labels": max_labels}


def _format(path: str) -> str:
    from paretune.data.readers import infer_format

    return infer_format(path)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)

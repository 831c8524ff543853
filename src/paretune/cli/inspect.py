"""`paretune inspect CONFIG [--set key=value ...] [--rows N]`: the pre-flight look at training data."""
from __future__ import annotations

from pathlib import Path

import typer


def inspect(
    config: Path = typer.Argument(..., help="YAML config file (as for paretune train)."),
    set_: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE", help="Override a key."),
    rows: int = typer.Option(3, "--rows", min=0, help="Examples to show."),
) -> None:
    """Show the first training examples as the model sees them, trained tokens «marked», and stop
    with an error when the data trains nothing or never trains the end-of-turn token."""
    from paretune.config import load_config
    from paretune.data.prepare import check_data
    from paretune.logs import setup_logging
    from paretune.models import load_tokenizer

    setup_logging()
    settled = load_config(config, set_)
    tokenizer = load_tokenizer(settled.model)
    checked = check_data(settled)  # every read and label check training does
    for line in checked.task.inspect(checked.train, tokenizer, settled.data.max_length, rows):
        print(line)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)

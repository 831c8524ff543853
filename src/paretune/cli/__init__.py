"""The `paretune` command: one module per subcommand, registered here."""
from __future__ import annotations

import sys

import typer

from paretune.cli.help_format import PlainHelpGroup
from paretune.errors import ParetuneError

app = typer.Typer(
    name="paretune",
    help="Fine-tune pretrained transformers and see what each point of accuracy costs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=PlainHelpGroup,
)


def _register() -> None:
    from paretune.cli import audit, bench_infer, compress, distill, evaluate, export, frontier, plan, predict, serve, sweep, train
    from paretune.cli import ensemble, generate, inspect, pairs, soup, ui
    from paretune.cli.help_format import use_plain_help

    for module in (train, evaluate, predict, export, serve, bench_infer, sweep, frontier, compress, distill, plan,
                   inspect, generate, ensemble, soup, audit, pairs, ui):
        module.register(app)
    use_plain_help(app)


def main() -> None:
    # Before torch loads (registering commands imports it): idle OpenMP threads sleep instead of
    # spinning, which on shared or quota-limited CPUs took the cores other work needed.
    from paretune.engine.threads import prefer_passive_waiting

    prefer_passive_waiting()
    _register()
    try:
        app()
    except ParetuneError as err:
        # User-fixable problems: a clear message, no traceback, exit code 2.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)

"""How `paretune <command> --help` names flags and arguments.

typer 0.29's rich help panel prints a type column for every option, flags included
(`--json <bool>`, even `--help <bool>`): its plain-text renderer skips flags, the rich one
does not. Its usage line wraps required arguments in braces (`{run}`), which reads like a
placeholder to fill in. Both come from typer itself, not from the installed click 8.5: typer 0.29
renders help with its own vendored copy of click (`typer._click`), so the installed click's
classes and settings never reach it. We fix both once here for every command, not per option.
"""
from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def _plain(params: list[Any]) -> list[Any]:
    """Flags without a type, arguments named in capitals; explicit metavars are kept."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # the rich panel prints the metavar in place of `<bool>`
        if isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
    return params


class PlainHelpGroup(TyperGroup):
    """The top-level `paretune` group, with the same plain flags as its commands."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))


class PlainHelpCommand(TyperCommand):
    """A typer command whose help shows flags bare and arguments as RUN, CONFIG, [CONFIG]."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def use_plain_help(app: typer.Typer) -> None:
    """Give every registered command of `app` the plain help above (unless it picked its own class)."""
    for command_info in app.registered_commands:
        if command_info.cls in (None, TyperCommand):  # typer fills in TyperCommand when none is given
            command_info.cls = PlainHelpCommand

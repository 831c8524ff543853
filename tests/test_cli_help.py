"""`paretune <command> --help` reads as plain help: bare flags, named arguments, every option explained."""
from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from paretune.cli import _register, app

_register()
COMMAND_GROUP = typer.main.get_command(app)
COMMANDS = sorted(COMMAND_GROUP.commands)


def render_help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_type_placeholders(command):
    text = render_help(*([command] if command else []))
    assert "<bool>" not in text  # flags take no value
    assert "{" not in text and "}" not in text  # typer's `{run}` for required arguments


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_and_argument_has_help_text(command):
    cmd = COMMAND_GROUP.commands[command]
    params = cmd.get_params(typer.Context(cmd))
    missing = [param.name for param in params if not (getattr(param, "help", None) or "").strip()]
    assert not missing, f"paretune {command}: no help for {missing}"


def test_arguments_show_as_capitals_in_usage():
    assert "eval [OPTIONS] RUN " in render_help("eval")
    assert "[OPTIONS] [CONFIG]" in render_help("train")
    assert "--set      -s      KEY=VALUE" in render_help("train")

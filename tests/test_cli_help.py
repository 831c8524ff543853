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


@pytest.mark.parametrize("command, model_path", [
    ("serve", "paretune.serving.settings:ServeSettings"),
    ("distill", "paretune.distillation.options:DistillOptions"),
])
def test_settings_fields_are_the_commands_options(command, model_path):
    """Declared once: every field of the settings model is an option, its description the help."""
    import importlib

    from paretune.cli.settings_options import cli_fields, flag_name

    module, name = model_path.split(":")
    model = getattr(importlib.import_module(module), name)
    options = {opt: param for param in COMMAND_GROUP.commands[command].params for opt in param.opts}
    for field_name, field in cli_fields(model).items():
        param = options[flag_name(model, field_name)]
        assert param.help == field.description and param.default == field.default, field_name
    if command == "serve":  # a field whose flag is named in json_schema_extra
        assert "--timeout" in options and "--request-timeout-s" not in options

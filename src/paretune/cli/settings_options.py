"""Command-line options made from a pydantic settings model, so each knob is declared once.

`@settings_options(ServeSettings)` adds one typer option per field of the model to a command:
`--field-name` (or the field's `json_schema_extra={"flag": "other-name"}`), the field's type and
default, its description as help. A bool that defaults to False is a bare flag (`--log-inputs`),
one that defaults to True gets its `--no-` form. Fields marked `json_schema_extra={"cli": False}`
are left to the command (e.g. API keys, read from a file); `{"off_flag": "per-tensor"}` names a
bool's opposite flag (`--per-channel/--per-tensor`). The command receives the values as
`settings: dict` and validates them by building the model (see `flag_name` for its errors).
"""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable, Optional

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo


def _extra(field: FieldInfo) -> dict:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def flag_name(model: type[BaseModel], field_name: str) -> str:
    """`--flag` of a field, e.g. for naming it in a validation error."""
    field = model.model_fields.get(field_name)
    flag = _extra(field).get("flag") if field is not None else None
    return "--" + (flag or field_name.replace("_", "-"))


def cli_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {name: field for name, field in model.model_fields.items() if _extra(field).get("cli", True)}


def _option(model: type[BaseModel], name: str, field: FieldInfo) -> Any:
    flag = flag_name(model, name)
    off_flag = _extra(field).get("off_flag")  # a named opposite, e.g. --per-channel/--per-tensor
    if off_flag:
        flag = f"{flag}/--{off_flag}"
    elif field.annotation is bool and field.default is True:
        flag = f"{flag}/--no-{flag[2:]}"
    return typer.Option(field.default, flag, help=field.description)


def _annotation(field: FieldInfo) -> Any:
    """The field's type as typer takes it: `X | None` as Optional[X]."""
    args = typing.get_args(field.annotation)
    if type(None) in args and len(args) == 2:
        return Optional[next(a for a in args if a is not type(None))]
    return field.annotation


def settings_options(model: type[BaseModel]) -> Callable[[Callable], Callable]:
    """Decorate a typer command taking `settings: dict`: the model's fields become its options."""
    fields = cli_fields(model)

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "settings"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=_option(model, name, field),
                                   annotation=_annotation(field)) for name, field in fields.items()]

        @functools.wraps(command)
        def with_settings(**kwargs: Any) -> Any:
            settings = {name: kwargs.pop(name) for name in fields}
            return command(settings=settings, **kwargs)

        hints = typing.get_type_hints(command)
        hints.pop("settings", None)
        with_settings.__signature__ = signature.replace(parameters=[*own, *added])  # what typer reads
        with_settings.__annotations__ = {**hints, **{p.name: p.annotation for p in added}}
        return with_settings

    return decorate

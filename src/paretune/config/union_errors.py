"""Readable messages for config sections that are discriminated unions (`method`, `task`).

pydantic reports a section without its tag as "Unable to extract tag using discriminator 'name'",
which does not say what to do. Here we look the section up in the schema, so the message names
the tag key, the allowed values, and which variants have the options the user did write:
`method: set method.name (one of: 'full', 'freeze', ...); trainable_layers is an option of: freeze`.
Works for any section declared as `Annotated[Union[...], Field(discriminator=...)]`, or told
apart by a function (`Discriminator(fn)` over `Annotated[M, Tag(t)]` members, as `task` is).
"""
from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, Discriminator, Tag

UNION_ERROR_TYPES = ("union_tag_not_found", "union_tag_invalid")


def union_variants(root: type[BaseModel], loc: tuple) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """(tag key, {tag value: options model}) of the union field at `loc`, or None if it is not one."""
    model: Any = root
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        if isinstance(field.discriminator, str):
            tag_key = field.discriminator
            variants = {}
            for member in typing.get_args(field.annotation):
                for tag in typing.get_args(member.model_fields[tag_key].annotation):
                    variants[tag] = member
            return tag_key, variants
        tagged = _tagged_members(field)
        if tagged:
            return tagged
        model = field.annotation
    return None


def _tagged_members(field) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """A union told apart by a function (`Discriminator(fn)`, members `Annotated[M, Tag(t)]`), as
    `task` is (a missing type means classification): the tag key is the members' Literal field."""
    if not any(isinstance(m, Discriminator) for m in field.metadata):
        return None
    variants, tag_key = {}, None
    for member in typing.get_args(field.annotation):
        model, *extras = typing.get_args(member) or (member,)
        tag = next((e.tag for e in extras if isinstance(e, Tag)), None)
        if tag is None:
            continue
        variants[tag] = model
        tag_key = tag_key or next((name for name, f in model.model_fields.items()
                                   if tag in typing.get_args(f.annotation)), None)
    return (tag_key, variants) if variants and tag_key else None


def is_union_tag(root: type[BaseModel], loc: tuple, index: int) -> bool:
    """Whether loc[index] is the variant name pydantic puts into the location ('method.freeze.x')."""
    found = union_variants(root, tuple(loc[:index])) if index > 0 else None
    return found is not None and loc[index] in found[1]


def describe_union_problem(root: type[BaseModel], problem: dict) -> tuple[str, str] | None:
    """(key, message) for a missing or unknown tag, or for an option the chosen variant lacks."""
    loc = tuple(problem["loc"])
    if problem["type"] in UNION_ERROR_TYPES:
        found = union_variants(root, loc)
        if found is None:
            return None
        tag_key, variants = found
        section = ".".join(map(str, loc))
        choices = ", ".join(f"{tag!r}" for tag in variants)
        given = problem.get("input") if isinstance(problem.get("input"), dict) else {}
        if problem["type"] == "union_tag_invalid":
            return f"{section}.{tag_key}", f"unknown {tag_key} {given.get(tag_key)!r}; one of: {choices}"
        message = f"set {section}.{tag_key} (one of: {choices}) to set {section} options"
        hints = [_owners_hint(key, variants) for key in given if key != tag_key]
        return section, "; ".join([message, *filter(None, hints)])
    if problem["type"] == "extra_forbidden" and len(loc) >= 3:
        found = union_variants(root, loc[:-2])
        if found is None or loc[-2] not in found[1]:
            return None
        tag_key, variants = found
        section = ".".join(map(str, loc[:-2]))
        hint = _owners_hint(str(loc[-1]), variants)
        message = f"unknown key for {section}.{tag_key}={loc[-2]}"
        return f"{section}.{loc[-1]}", f"{message}; {hint}" if hint else message
    return None


def _owners_hint(key: str, variants: dict[str, type[BaseModel]]) -> str:
    owners = [tag for tag, model in variants.items() if key in model.model_fields]
    return f"{key} is an option of: {', '.join(owners)}" if owners else ""

"""The form of an NER tag: `O`, or a prefix, a hyphen and an entity type (`B-PER`).

A tag such as `X-PER`, `b-PER`, `B_PER` or `I-` reads as its own label and silently yields a
class no entity can ever be built from, so each tag is checked against the tag scheme: the one
declared in task.tag_scheme, or under `auto` any prefix some scheme allows (the scheme itself is
detected later, from the training tags).
"""
from __future__ import annotations

from typing import Any

SCHEME_PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "bioes": ("B", "I", "E", "S"),
                   "auto": ("B", "I", "E", "S")}


def tag_problem(tag: Any, scheme: str) -> str | None:
    """Why `tag` is not a tag of `scheme`, or None when it is."""
    if tag == "O":
        return None
    prefixes = SCHEME_PREFIXES.get(scheme, SCHEME_PREFIXES["auto"])
    expected = "expected O or " + ", ".join(f"{p}-TYPE" for p in prefixes)
    if not isinstance(tag, str):
        return f"tag {tag!r} is a number, not a tag; {expected} (map class ids to tag names first)"
    prefix, hyphen, kind = tag.partition("-")
    if not hyphen:
        separator = next((c for c in "_.:" if c in tag), None)
        hint = f" ('{separator}' where '-' belongs)" if separator else ""
        return f"tag {tag!r} has no prefix-type form{hint}; {expected}"
    if prefix not in prefixes:
        if prefix.upper() in prefixes:
            return f"tag {tag!r} has a lower-case prefix '{prefix}'; {expected}"
        if prefix in SCHEME_PREFIXES["bioes"]:
            return f"tag {tag!r} is a BIOES tag but task.tag_scheme is {scheme}; set task.tag_scheme: bioes"
        return f"tag {tag!r} has an unknown prefix '{prefix}'; {expected}"
    if not kind.strip():
        return f"tag {tag!r} has no entity type after '{prefix}-'; {expected}"
    return None

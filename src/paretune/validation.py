"""pydantic validation errors as (key, message) pairs, the one way every command reads them.

Callers choose how a key is written (a dotted config key, a `--flag`) and how the pairs are
joined; `readable` says "unknown key" for a misspelt one and shows the rejected value.
"""
from __future__ import annotations

from typing import Callable, Optional

from pydantic import ValidationError

Problem = tuple[str, str]


def dotted_key(loc: tuple, empty: str = "<top level>") -> str:
    return ".".join(str(part) for part in loc) or empty


def validation_problems(err: ValidationError, *, key: Callable[[tuple], str] = dotted_key,
                        readable: bool = False,
                        special: Optional[Callable[[dict], Optional[Problem]]] = None) -> list[Problem]:
    """One (key, message) per problem, in pydantic's order. `special` may word a problem itself
    (config unions do) by returning a pair, or None to leave it to the rules here."""
    found = []
    for problem in err.errors():
        worded = special(problem) if special else None
        if worded is not None:
            found.append(worded)
            continue
        message = problem["msg"]
        if readable and problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif readable and "input" in problem and problem["type"] != "missing":
            message += f" (got {problem['input']!r})"
        found.append((key(tuple(problem["loc"])), message))
    return found

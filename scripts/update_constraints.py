"""Write constraints.txt: the exact versions of everything `paretune[dev]` pulls in, as installed now.

The package itself declares ranges (pyproject.toml), so users are never frozen; the README's set-up
and CI install with `-c constraints.txt`, so a new release upstream cannot turn CI red by itself.
To move to newer releases: install without the constraints (`bash .ci/run --latest`), and when
the suite is green, run this script and commit the new file.

torch is left out on purpose: the CPU set-up names torch==2.13.0 itself, and a GPU user keeps the
torch build they have.
"""
from __future__ import annotations

import re
import sys
from datetime import date
from importlib import metadata
from pathlib import Path

ROOT_PACKAGE, ROOT_EXTRAS = "paretune", {"dev"}
LEFT_OUT = re.compile(r"^(torch|nvidia-.*|triton|paretune)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(dist: metadata.Distribution, extras: set[str]) -> list[tuple[str, set[str]]]:
    """The (name, extras) a distribution needs on this platform with the given extras."""
    from packaging.requirements import Requirement

    needed = []
    for line in dist.requires or []:
        req = Requirement(line)
        wanted = any(req.marker.evaluate({"extra": e}) for e in extras | {""}) if req.marker else True
        if wanted:
            needed.append((canonical(req.name), set(req.extras)))
    return needed


def closure() -> dict[str, str]:
    """name -> installed version, for everything reachable from paretune[dev]."""
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = [(ROOT_PACKAGE, ROOT_EXTRAS)]
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in seen or (name != ROOT_PACKAGE and LEFT_OUT.match(name)):
            continue  # torch's own needs are the torch build's business
        seen.add((name, frozenset(extras)))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional need of a platform we are not on
        pinned[canonical(dist.metadata["Name"])] = dist.version
        for req_name, req_extras in requirements(dist, extras):
            if req_name == ROOT_PACKAGE:  # paretune[dev] asks for paretune[serve,onnx,...]
                todo.append((ROOT_PACKAGE, req_extras))
            else:
                todo.append((req_name, req_extras))
    pinned.pop(ROOT_PACKAGE, None)
    return pinned


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "constraints.txt"
    pins = closure()
    header = (
        "# The tested set: exact versions of everything paretune[dev] installs (torch excluded).\n"
        f"# Written by scripts/update_constraints.py on {date.today()} with Python "
        f"{sys.version.split()[0]}; used by the README's set-up and .ci/run.\n"
    )
    out.write_text(header + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), encoding="utf-8")
    print(f"wrote {len(pins)} pins to {out}")


if __name__ == "__main__":
    main()

"""The import rules of docs/architecture.md, read from the source with `ast` (nothing is imported).

1. No import cycle between modules, counting imports inside functions too.
2. No module imports from a layer above its own (LAYERS, lowest first).

`from pkg import name` is an edge to the submodule `pkg.name` when there is one, else to
`pkg/__init__.py`. Edges that other branches are removing are listed in ALLOWED, each with its
reason; empty that list as they land.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "paretune"

# Lowest first. A module belongs to the layer of its longest matching prefix; it may import its
# own layer and the ones below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("paretune.errors", "paretune.logs", "paretune.yaml_file", "paretune.validation",
                    "paretune.version", "paretune.resources")),
    # Tasks turn rows into model inputs and score outputs; they need only the data types (Example,
    # Encoded, collation) and the metrics. A task's options are a config section, as a method's are,
    # so both sit below config.
    # The decoding engine (paretune.inference) knows models and tokenizers only; tasks answer through it.
    ("tasks and data types", ("paretune.tasks", "paretune.data", "paretune.evaluation", "paretune.backbones",
                              "paretune.inference")),
    # Methods ask the task for facts (peft's task type); config builds its unions from both registries.
    ("methods", ("paretune.methods",)),
    ("config", ("paretune.config", "paretune.remote_code")),
    # Reading and preparing a run's data and loading its model follow the config.
    ("data preparation", ("paretune.data.prepare", "paretune.data.paraphrase", "paretune.models",
                          "paretune.models_gguf")),
    ("engine", ("paretune.engine", "paretune.cost")),
    ("run folder", ("paretune.run_folder", "paretune.run_replace")),
    ("stored models", ("paretune.stored", "paretune.export", "paretune.model_card", "paretune.predictor",
                       "paretune.batch_predict", "paretune.generate_text", "paretune.resumable_output")),
    ("launcher", ("paretune.distributed.launch",)),
    # Experiment tracking and the run's hooks (plan, tracked metrics): used by the runner and sweeps.
    ("tracking", ("paretune.tracking",)),
    ("runner", ("paretune.runner", "paretune.run_results", "paretune.recipes")),
    ("commands", ("paretune.compression", "paretune.distillation", "paretune.sweep", "paretune.serving",
                  "paretune.frontier", "paretune.cost.inference", "paretune.cost.generation_speed",
                  "paretune.combine", "paretune.audit", "paretune.continual", "paretune.ui")),
    ("entry points", ("paretune", "paretune.cli", "paretune.__main__", "paretune.distributed.worker")),
]

# (importer, imported): being removed by the branches named. Empty this list as they merge.
ALLOWED: dict[tuple[str, str], str] = {}


def module_files() -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package __init__)} for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict) -> set[str]:
    if isinstance(node, ast.Import):
        targets = set()
        for alias in node.names:
            name = alias.name
            while name and name not in modules:  # `import paretune.a.b` names a module or a package
                name = name.rpartition(".")[0]
            if name:
                targets.add(name)
        return targets
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:  # relative: from the module's own package upwards
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    if base.split(".")[0] != "paretune":
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def import_edges() -> dict[str, set[str]]:
    """{module: modules it imports}, from every import statement, in functions too."""
    modules = module_files()
    edges = {}
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges[module] = {target for node in ast.walk(tree)
                         for target in _imported(node, module, is_package, modules) if target != module}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best


def _without_allowed(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if (m, t) not in ALLOWED} for m, targets in edges.items()}


def test_no_import_cycles():
    cycle = find_cycle(_without_allowed(import_edges()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted(
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in _without_allowed(import_edges()).items()
        for target in targets if layer_of(target) > layer_of(module)
    )
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_allowed_edges_still_exist():
    """An entry whose import is gone is stale: delete it so the list only shrinks."""
    edges = import_edges()
    stale = [pair for pair in ALLOWED if pair[1] not in edges.get(pair[0], set())]
    assert not stale, f"remove from ALLOWED, the import is gone: {stale}"


def test_the_checks_see_a_cycle_and_an_upward_import():
    cycle = find_cycle({"paretune.a": {"paretune.b"}, "paretune.b": {"paretune.c"}, "paretune.c": {"paretune.a"}})
    assert cycle == ["paretune.a", "paretune.b", "paretune.c", "paretune.a"]
    assert layer_of("paretune.cli.train") > layer_of("paretune.serving.server") > layer_of("paretune.errors")


@pytest.mark.parametrize("source, expected", [
    ("from paretune.engine import loop", {"paretune.engine.loop"}),  # a submodule
    ("from paretune.config import Config", {"paretune.config"}),  # a name: the package __init__
    ("import paretune.engine.loop", {"paretune.engine.loop"}),
    ("from .checkpoint import LoopState", {"paretune.engine.checkpoint"}),
    ("def f():\n    from paretune.cli import app", {"paretune.cli"}),  # inside a function
])
def test_what_counts_as_an_import(source, expected):
    modules = module_files()
    found = set().union(*(_imported(n, "paretune.engine.loop", False, modules) for n in ast.walk(ast.parse(source))))
    assert found == expected

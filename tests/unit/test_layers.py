"""The package's shape: folders are layers, imports go down them only, no import cycle, no
module over 600 lines. Read from the source (every import, those inside functions too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "slotswap"

# Bottom to top; a module may import its own layer and the ones before it.
LAYERS = ("core", "config", "commands", "remote", "https", "server", "fleet", "cli")
MAX_LINES = 600



def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> Iterator[str]:
    """The kit's modules `path` imports, each resolved to the module it names."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in MODULES else node.module for name in names]
        else:
            continue
        yield from (name for name in names if name in MODULES)


GRAPH = {name: sorted(set(imported(path)) - {name}) for name, path in MODULES.items()}


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_is_in_a_layer() -> None:
    # slotswap/__init__.py and slotswap/tasks.py (the tasks' public name) stand above them all.
    loose = [name for name in MODULES if layer(name) is None
             and name not in ("slotswap", "slotswap.tasks")]
    assert loose == []


def test_every_layer_says_what_it_may_import() -> None:
    for name in LAYERS:
        text = (PACKAGE / name / "__init__.py").read_text(encoding="utf-8")
        assert "Imports:" in text, name


def test_imports_go_down_the_layers_only() -> None:
    upward = [(name, target) for name, targets in GRAPH.items() for target in targets
              if layer(name) is not None and layer(target) is not None
              and layer(target) > layer(name)]  # type: ignore[operator]
    assert upward == []


def cycles() -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert cycles() == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_600_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]}: {lines} lines"

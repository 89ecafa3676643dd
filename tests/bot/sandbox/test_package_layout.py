"""The loopback Discord package stays a readable stack: no import cycles, each module importable alone,
and production start-up does not load it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bot.sandbox.discord as package

PACKAGE_DIR = Path(package.__file__).parent
PREFIX = "bot.sandbox.discord"
MODULES = sorted(f"{PREFIX}.{path.stem}" for path in PACKAGE_DIR.glob("*.py") if path.stem != "__init__")


def internal_imports(module: str) -> set[str]:
    """The package's own modules that `module` imports (at any level of its source)."""
    tree = ast.parse((PACKAGE_DIR / f"{module.rsplit('.', 1)[1]}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX + "."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PREFIX + "."))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that comes back to where it started, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for child in sorted(graph.get(node, ())):
            if (cycle := visit(child, [*path, node])) is not None:
                return cycle
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node, [])) is not None), None)


def test_the_import_graph_has_no_cycles() -> None:
    graph = {module: internal_imports(module) for module in MODULES}
    assert set().union(*graph.values()) <= set(MODULES), "imports a module that does not exist"
    assert find_cycle(graph) is None
    # The layering the package docstring promises: constants and the pure rules import nothing stateful.
    assert graph[f"{PREFIX}.constants"] == set()
    assert graph[f"{PREFIX}.rules"] <= {f"{PREFIX}.constants"}
    assert f"{PREFIX}.server" not in set().union(*graph.values())


def test_the_cycle_check_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def closure(graph: dict[str, set[str]], module: str) -> set[str]:
    seen: set[str] = set()
    stack = [module]
    while stack:
        if (current := stack.pop()) not in seen:
            seen.add(current)
            stack.extend(graph[current])
    return seen


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str) -> None:
    """A fresh interpreter imports the module and loads nothing of the package beyond what it imports."""
    code = (f"import sys, {module}; "
            f"print(' '.join(sorted(m for m in sys.modules if m.startswith('{PREFIX}.'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    graph = {name: internal_imports(name) for name in MODULES}
    assert set(result.stdout.split()) == closure(graph, module)


def test_production_start_up_does_not_load_the_loopback_discord() -> None:
    code = "import sys, bot.app; print(any(m.startswith('bot.sandbox') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

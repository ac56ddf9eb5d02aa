"""The package's import graph keeps the layering of design/architecture.md.

Read from the source with `ast` (nothing imported): no import cycle among module-level imports,
those under `if TYPE_CHECKING:` included; `sync/`, `printer/`, `discovery/` import nothing of
`api/`, `runner` or `driving`, even inside a function; only `cli` imports `node`; `model`
imports nothing of the project.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "lanqueue"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = current.split(".") if is_pkg else current.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    found = []
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        found.append(sub if sub in MODULES else prefix)
    return found


def imports(name: str, *, top_level_only: bool) -> set[str]:
    """Project modules `name` imports; with `top_level_only`, those run when it is imported or
    type-checked (module body and `if TYPE_CHECKING:` blocks), not those inside functions."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.update(_resolve(name, is_pkg, node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not top_level_only or isinstance(node, ast.ClassDef):
                    visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []))

    visit(tree.body)
    return {m for m in found if m in MODULES and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def _is_package_edge(a: str, b: str) -> bool:
    """A package's `__init__` naming its own submodules is not a cycle in the sense that matters."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_type_checking_imports_included():
    graph = {m: {d for d in imports(m, top_level_only=True) if not _is_package_edge(m, d)} for m in MODULES}
    assert cycles(graph) == []


@pytest.mark.parametrize("layer", ["lanqueue.sync", "lanqueue.printer", "lanqueue.discovery"])
def test_lower_layers_import_no_api_or_driver(layer):
    banned = ("lanqueue.api", "lanqueue.runner", "lanqueue.driving", "lanqueue.node")
    bad = {m: sorted(d for d in imports(m, top_level_only=False) if d.startswith(banned))
           for m in MODULES if m == layer or m.startswith(layer + ".")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_only_cli_imports_node():
    users = sorted(m for m in MODULES if "lanqueue.node" in imports(m, top_level_only=False))
    assert set(users) <= {"lanqueue.cli"}, users


def test_model_imports_nothing_of_the_project():
    assert imports("lanqueue.model", top_level_only=False) == set()

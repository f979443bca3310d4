"""The import structure: no cycles among dnsfw's modules, and the core apart from the plugins.

The graph is static (``ast``): every ``import`` and ``from ... import`` of a module, at any
depth: one inside a function runs too, later, and one under ``if TYPE_CHECKING:`` is still a
dependency (two modules that need each other's types are one module in two files). An edge
goes to the module imported, not to its parent packages (a package that imports its own
submodules is not a cycle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("proxy", "plugins", "commands")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the dnsfw modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from PKG import NAME`: the submodule PKG.NAME when there is one, else PKG
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_the_graph_sees_the_modules_and_their_imports() -> None:
    graph = import_graph()
    assert {"proxy.server", "plugins.firewall.plugin", "commands.audit.scan"} <= set(graph)
    assert "proxy.routing" in graph["proxy.server"]
    assert "plugins.log.route53" in graph["commands.audit.scan"]
    assert "commands.audit.scan" in graph["commands.audit.names"]  # `from .scan import`


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert find_cycles(import_graph()) == []


def test_the_core_does_not_import_plugins_or_commands() -> None:
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith("proxy"):
            wrong = sorted(e for e in edges if e.startswith(("plugins.", "commands")))
            assert not wrong, f"{name} imports {wrong}"
        if name.startswith("plugins"):
            assert not [e for e in edges if e.startswith("commands")], name


def test_loading_the_firewall_plugin_does_not_import_the_server() -> None:
    code = (
        "import sys, plugins.firewall, plugins.log; "
        "print(sorted(m for m in sys.modules if m in ('proxy.server', 'proxy.admin', "
        "'proxy.runtime') or m.startswith('commands')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

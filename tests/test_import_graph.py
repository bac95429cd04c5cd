"""No import cycles in hpclab/, and hpclab.comm imports only at the top of its files.

The graph is read from the source with `ast` (nothing is imported): a node per module of
hpclab/, an edge a → b for every `import b` / `from b import ...` anywhere in a (inside
functions too: a deferred import hides a cycle, it does not remove it). `from pkg import
name` points at pkg.name when that is a module, else at pkg's __init__. A package's
__init__ that a submodule import runs on the way is not counted: it is not an import the
module writes (a package's __init__ importing its own submodules is the usual layout).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "hpclab"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(node, name: str, path: Path, modules) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(max(node.level - 1, 0)):
        package = package.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        base = f"{package}.{base}" if base else package
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _targets(node, name, path, modules) if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "hpclab.comm.ring" in graph["hpclab.comm.collectives"]
    assert "hpclab.comm.p2p" in graph["hpclab.comm.ring"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_hpclab():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("path", sorted((ROOT / "comm").glob("*.py")), ids=lambda p: p.name)
def test_comm_imports_only_at_the_top(path):
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    late = [node.lineno for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top]
    assert late == [], f"{path.name}: imports inside functions at lines {late}"


def test_algorithm_files_use_only_the_comm_verbs():
    """The transport (pieces, slots, buffer pool) is p2p.py's business alone."""
    graph = import_graph()
    users = sorted(m for m, targets in graph.items() if "hpclab.comm._transport" in targets)
    assert users == ["hpclab.comm.p2p"], users

"""The package's import graph, read from the source with ast (nothing is imported or run):
library layers never import a CLI or the server, and no modules import each other in a cycle.
Imports inside functions count too: a lazy import is still a dependency."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "nanoemox"
LIBRARY = ("modeling", "data", "training", "inference", "evaluation")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PKG).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """nanoemox modules `name` imports -> first line. `from pkg import sub` counts as the
    submodule when `sub` is one."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            targets = subs or [mod]
        for t in targets:
            while t and t not in known:  # `import nanoemox.x.y` where y is an attribute
                t = t.rpartition(".")[0]
            if t.startswith(PKG) and t != name:
                found.setdefault(t, node.lineno)
    return found


def _graph() -> dict[str, dict[str, int]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _is_cli(mod: str) -> bool:
    return mod == f"{PKG}.cli" or mod.endswith(".cli")


def test_library_layers_never_import_a_cli_or_the_server():
    graph = _graph()
    bad = []
    for mod, deps in graph.items():
        layer = mod.split(".")[1] if "." in mod else ""
        if layer not in LIBRARY or _is_cli(mod):
            continue  # a layer's own cli.py is the thin wrapper that may import its library
        for dep, line in deps.items():
            if _is_cli(dep) or dep == f"{PKG}.serving" or dep.startswith(f"{PKG}.serving."):
                bad.append(f"{mod} (line {line}) imports {dep}")
    assert not bad, "library modules import a CLI or serving:\n" + "\n".join(bad)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is not a cycle between modules
    graph = {m: {d: ln for d, ln in deps.items() if not d.startswith(m + ".")} for m, deps in graph.items()}
    cycles = _cycles(graph)
    detail = []
    for comp in cycles:
        edges = [f"{a} -> {b} (line {graph[a][b]})" for a in comp for b in graph[a] if b in comp]
        detail.append("; ".join(edges))
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_the_graph_reader_sees_real_edges():
    """Guard against a reader that finds nothing (which would make the two tests above pass)."""
    graph = _graph()
    assert f"{PKG}.modeling.configuration" in graph[f"{PKG}.modeling.modeling_nanoemox"]
    assert f"{PKG}.training.recipe" in graph[f"{PKG}.training.cli"]
    assert f"{PKG}.errors" in graph[f"{PKG}.training.recipe"]
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]

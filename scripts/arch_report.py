"""Architecture figures of a checkout: import cycles, in-function imports, longest functions.

Run from the repository root (or pass one): ``python scripts/arch_report.py [ROOT]``.
Counts imports wherever they are written (module level, inside functions, under
TYPE_CHECKING), because an import hidden in a function still makes a cycle. Used to
show the before/after of the layering work; ``lint-imports`` is the check CI enforces.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = ("backfill", "actors", "cluster")
LONG = 50


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a module or ``module.attribute``) names."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(known: dict[str, Path]) -> tuple[dict[str, set[str]], int, int]:
    """(graph, imports inside functions, of which of the project's own modules)."""
    graph: dict[str, set[str]] = defaultdict(set)
    in_functions = own_in_functions = 0
    for mod, path in known.items():
        tree = ast.parse(path.read_text())
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            targets = {t for t in (_resolve(n, known) for n in names) if t and t != mod}
            graph[mod] |= targets
            if id(node) in nested:
                in_functions += 1
                own_in_functions += bool(targets)
    return graph, in_functions, own_in_functions


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], int]:
    """Imports between the three top-level packages, by direction."""
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for src, targets in graph.items():
        for dst in targets:
            a, b = src.split(".")[0], dst.split(".")[0]
            if a != b:
                edges[(a, b)] += 1
    return dict(edges)


def long_functions(known: dict[str, Path]) -> list[tuple[int, str]]:
    """(lines, module:function) of every function longer than LONG lines."""
    found = []
    for mod, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                n = node.end_lineno - node.lineno + 1
                if n > LONG:
                    found.append((n, f"{mod}:{node.name}"))
    return sorted(found, reverse=True)


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else ".").resolve()
    known = modules(root)
    graph, nested, own_nested = import_graph(known)
    groups = cycles(graph)
    print(f"modules: {len(known)}")
    print(f"imports inside functions: {nested} ({own_nested} of the project's own modules)")
    print("imports between packages: " + ", ".join(f"{a} -> {b}: {n}" for (a, b), n in
                                                    sorted(package_edges(graph).items())))
    print(f"import cycles (counting imports inside functions): {len(groups)}")
    for g in groups:
        print(f"  {len(g)} modules: {', '.join(g)}")
    longs = long_functions(known)
    print(f"functions over {LONG} lines: {len(longs)}")
    for n, name in longs:
        print(f"  {n:4d} {name}")
    return 1 if groups else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

"""The import graph of EmberFS's product packages, read from the source with `ast`.

Run it to see the cycles and the imports that cross a layer (docs/ARCHITECTURE.md,
"What may import what"):

    python scripts/importgraph.py            # cycles among module-level imports, layer breaks
    python scripts/importgraph.py --all      # also the cycles that need deferred imports

An import is *module-level* when it runs at import time (top level, in a class body, or
under a plain `if`/`try`), *deferred* when it sits inside a function, and *typing* when it
sits under `if TYPE_CHECKING:`. Only module-level imports can make Python's import fail,
but a deferred import that closes a cycle is still a cycle in the design, so both are
reported apart. This script only shows; tests/unit/test_import_layers.py judges (no cycle
of any kind, no layer break but the exceptions it lists and explains).

Nothing here imports EmberFS: the graph comes from the files alone.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each top-level folder installs as emberfs.<folder> (pyproject.toml's package-dir).
PACKAGES = ("proto", "common", "metaserver", "storage", "client", "bench")
MODULE_LEVEL, DEFERRED, TYPING = "module", "deferred", "typing"


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    kind: str  # MODULE_LEVEL, DEFERRED or TYPING
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    """`client/_file.py` -> `emberfs.client._file`; a package's `__init__.py` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["emberfs", *parts])


def product_files(root: Path = ROOT) -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: Iterable[ast.stmt], kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement under `body`, with the kind its position gives it."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, kind
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _imports(node.body, DEFERRED)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports(node.body, TYPING if kind == MODULE_LEVEL else kind)
            yield from _imports(node.orelse, kind)
        else:  # a class body, if, try, with, for, match: the same kind as where it sits
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _imports([child], kind)
                elif isinstance(child, ast.ExceptHandler | ast.match_case):
                    yield from _imports(child.body, kind)


def _resolve(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The product modules an import statement names (a `from pkg import mod` names mod)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        if sub in known:
            found.append(sub)
        elif target in known:
            found.append(target)
    return sorted(set(found))


def build_graph(root: Path = ROOT) -> list[Edge]:
    files = list(product_files(root))
    known = {module_name(f, root) for f in files}
    edges: set[Edge] = set()
    for path in files:
        importer = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, kind in _imports(tree.body, MODULE_LEVEL):
            for imported in _resolve(importer, path.name == "__init__.py", node, known):
                if imported != importer:
                    edges.add(Edge(importer, imported, kind, node.lineno))
    return sorted(edges, key=lambda e: (e.importer, e.imported, e.kind, e.line))


def find_cycles(edges: Iterable[Edge], kinds: frozenset[str]) -> list[list[str]]:
    """The strongly connected components (more than one module) of the graph of `kinds` edges.

    Tarjan's algorithm, iterative so that a deep graph cannot hit the recursion limit.
    A package's implicit import of its `__init__` is not an edge: only what the code names.
    """
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.kind in kinds:
            graph.setdefault(edge.importer, set()).add(edge.imported)
            graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(components)


def package_of(module: str) -> str:
    """`emberfs.metaserver.mgmt.state` -> `metaserver`."""
    return module.split(".")[1]


# docs/ARCHITECTURE.md, "What may import what": the packages each package may import
# (itself always).
ALLOWED = {
    "proto": frozenset(),
    "common": frozenset({"proto"}),
    "metaserver": frozenset({"common", "proto"}),
    "storage": frozenset({"common", "proto"}),
    "client": frozenset({"common", "proto"}),
    "bench": frozenset(PACKAGES),
}


def layer_breaks(edges: Iterable[Edge]) -> list[Edge]:
    """Imports, of any kind, from one package into one its layer does not allow."""
    breaks = []
    for edge in edges:
        source, target = package_of(edge.importer), package_of(edge.imported)
        if source != target and target not in ALLOWED[source]:
            breaks.append(edge)
    return breaks


def _short(module: str) -> str:
    return module.removeprefix("emberfs.")


def main(argv: list[str]) -> int:
    edges = build_graph()
    kinds = [frozenset({MODULE_LEVEL}), frozenset({MODULE_LEVEL, DEFERRED, TYPING})]
    labels = ["module-level imports", "all imports (module-level, deferred, TYPE_CHECKING)"]
    if "--all" not in argv:
        kinds, labels = kinds[:1], labels[:1]
    counts = {kind: sum(e.kind == kind for e in edges) for kind in (MODULE_LEVEL, DEFERRED, TYPING)}
    print("edges: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    for kind_set, label in zip(kinds, labels, strict=True):
        cycles = find_cycles(edges, kind_set)
        print(f"cycles among {label}: {len(cycles)}")
        for cycle in cycles:
            members = set(cycle)
            print("  " + " <-> ".join(_short(m) for m in cycle))
            for edge in edges:
                if edge.kind in kind_set and edge.importer in members and edge.imported in members:
                    print(f"      {_short(edge.importer)}:{edge.line} -> {_short(edge.imported)} ({edge.kind})")
    breaks = layer_breaks(edges)
    print(f"imports across layers: {len(breaks)}")
    for edge in breaks:
        print(f"  {_short(edge.importer)}:{edge.line} -> {_short(edge.imported)} ({edge.kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The import graph of a package, read from the source (AST): its circles, its depth in layers, its edges.

    python tools/import_graph.py [PACKAGE_DIR] [--edges]

Every `import` and `from ... import` counts, also those inside functions (a deferred import still ties two
modules together); imports under `if TYPE_CHECKING:` do not (they never run). Only edges between modules of
the package are kept. Prints the figures (modules, edges, layers, circles), each circle and each import against
the declared layers (LAYERS); exit 1 when there is one, when the module graph stands deeper than MAX_LAYERS, or
when a module that may not talk HTTP imports an HTTP client. tests/test_architecture.py runs the same checks in
the suite.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Modules that may import an HTTP client, and why. Everything that talks to Label Studio goes through its
# client (studio.py); the others here talk HTTP to something else or are development equipment.
HTTP_CLIENTS = ("httpx", "requests", "urllib.request", "label_studio_sdk.client")
HTTP_ALLOWED = {
    "backend.studio.client": "the one Label Studio client (the SDK, and StudioAdmin's REST calls with its auth)",
    "backend.devtools.local_studio": "the local Label Studio harness probes /health of the server it starts (its REST "
    "calls go through the one client, studio.StudioAdmin)",
    "backend.commands.demo": "the demo command waits for the processes it starts",
    "backend.processes": "health probes of the backend processes it starts",
    "backend.devtools.fake_llm.server": "the stand-in LLM server's own client (development equipment)",
}


# How deep the module graph may stand (the longest chain of imports, in modules); deeper means a module reaches
# through others for something that belongs lower.
MAX_LAYERS = 10

# Old module paths kept for one release so that rq jobs already queued under them still run; they only
# re-export, so they stand outside the graph.
COMPAT_ALIASES = {"backend.jobs": "rq jobs enqueued as backend.jobs.* before the packages (remove in 0.3)"}

# The packages by role, top to bottom: a module imports its own package and the layers below, never a layer
# above nor another package of its own layer. "backend" is the base: settings, logs, costs, lifetime, processes.
LAYERS: list[tuple[str, ...]] = [
    ("backend.commands",),
    ("backend.web",),
    ("backend.pipeline", "backend.devtools"),
    ("backend.model", "backend.studio"),
    ("backend.state", "backend.evaluation"),
    ("backend",),
    ("backend.labeling",),
]


@dataclass
class Graph:
    """Modules of a package and the imports between them."""

    modules: list[str]
    edges: dict[str, set[str]] = field(default_factory=dict)  # importer -> imported (both in the package)
    external: dict[str, set[str]] = field(default_factory=dict)  # importer -> outside modules it imports

    @property
    def edge_count(self) -> int:
        return sum(len(targets) for targets in self.edges.values())


def module_name(path: Path, root: Path) -> str:
    """backend/labeling/spec.py -> backend.labeling.spec; a package's __init__.py -> the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def build(package_dir: Path) -> Graph:
    """The import graph of the package in `package_dir` (a directory with an __init__.py)."""
    root = package_dir.resolve()
    paths = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    names = {module_name(p, root): p for p in paths}
    names = {name: path for name, path in names.items() if name not in COMPAT_ALIASES}
    graph = Graph(modules=sorted(names))
    for name, path in names.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        internal, external = set(), set()
        for imported in _imports(tree, name, is_package):
            target = _resolve(imported, names)
            if target is None:
                external.add(imported)
            elif target != name:
                internal.add(target)
        graph.edges[name] = internal
        graph.external[name] = external
    return graph


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[str]:
    """Absolute dotted names this module imports (for `from a import b`: a.b, which may be a module or not)."""
    found: list[str] = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            found.extend(f"{base}.{alias.name}" if alias.name != "*" else base for alias in node.names)
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: all of them except the bodies of `if TYPE_CHECKING:` blocks."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)  # the else branch does run
                continue
            stack.append(child)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    # In a package's __init__, "." is the package itself; in a module, its parent.
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = parts[:keep]
    return ".".join(base + ([node.module] if node.module else []))


def _resolve(imported: str, names: dict[str, Path]) -> str | None:
    """The package module an import runs: the longest prefix of the dotted name that is one, else None."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in names:
            return candidate
    return None


def circles(graph: Graph) -> list[list[str]]:
    """Every group of modules that import each other (strongly connected, more than one), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative (no recursion limit on deep graphs)
        nonlocal counter
        work = [(start, iter(sorted(graph.edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))

    for module in graph.modules:
        if module not in index:
            visit(module)
    return sorted(found)


def layers(graph: Graph) -> int:
    """How deep the graph stands: the most modules on one chain of imports (a circle counts as one)."""
    group_of = {}
    for group in circles(graph):
        for member in group:
            group_of[member] = group[0]
    depth: dict[str, int] = {}

    def height(node: str) -> int:
        if node in depth:
            return depth[node]
        depth[node] = 1  # a guard while inside a circle
        below = {group_of.get(t, t) for m in _members(node, group_of) for t in graph.edges.get(m, ())}
        below.discard(node)
        depth[node] = 1 + max((height(t) for t in below), default=0)
        return depth[node]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph.modules) + 100))
    return max((height(group_of.get(m, m)) for m in graph.modules), default=0)


def longest_chain(graph: Graph) -> list[str]:
    """One chain of imports as long as the graph is deep (on a graph without circles), top module first."""
    best: dict[str, list[str]] = {}

    def chain(node: str, seen: frozenset[str]) -> list[str]:
        if node in best:
            return best[node]
        below = [chain(t, seen | {node}) for t in sorted(graph.edges.get(node, ())) if t not in seen]
        best[node] = [node, *max(below, key=len, default=[])]
        return best[node]

    return max((chain(m, frozenset()) for m in graph.modules), key=len, default=[])


def package_of(module: str, layers: list[tuple[str, ...]]) -> str:
    """The package of the layers a module belongs to (the longest that is a prefix of its name)."""
    names = [p for layer in layers for p in layer]
    return max((p for p in names if module == p or module.startswith(p + ".")), key=len, default=module)


def upward_imports(graph: Graph, layers: list[tuple[str, ...]] | None = None) -> list[str]:
    """Imports that run up the layers, or across two packages of one layer ("a -> b" each)."""
    layers = LAYERS if layers is None else layers
    rank = {p: i for i, layer in enumerate(layers) for p in layer}
    found = []
    for module in graph.modules:
        source = package_of(module, layers)
        for target in sorted(graph.edges.get(module, ())):
            dest = package_of(target, layers)
            if dest != source and rank.get(dest, -1) <= rank.get(source, -1):
                found.append(f"{module} -> {target}")
    return found


def _members(node: str, group_of: dict[str, str]) -> list[str]:
    return [m for m, g in group_of.items() if g == node] or [node]


def http_violations(graph: Graph, allowed: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Modules that import an HTTP client without being allowed to (module -> the clients it imports)."""
    allowed = HTTP_ALLOWED if allowed is None else allowed
    found = {}
    for module, imported in graph.external.items():
        clients = sorted(i for i in imported if any(i == c or i.startswith(c + ".") for c in HTTP_CLIENTS))
        if clients and module not in allowed:
            found[module] = clients
    return found


def package_graph(graph: Graph) -> Graph:
    """The same graph with every module folded into its top package (backend.labeling.controls.base ->
    backend.labeling; backend.commands.cli -> backend)."""

    def package(name: str) -> str:
        return ".".join(name.split(".")[:2]) if name.split(".")[:2] in tops else name.split(".")[0]

    tops = [m.split(".") for m in graph.modules if m.count(".") == 1 and _is_package_name(m, graph)]
    folded = Graph(modules=sorted({package(m) for m in graph.modules}))
    for module, targets in graph.edges.items():
        source = package(module)
        folded.edges.setdefault(source, set()).update(package(t) for t in targets if package(t) != source)
    return folded


def _is_package_name(name: str, graph: Graph) -> bool:
    return any(m.startswith(name + ".") for m in graph.modules)


def summary(graph: Graph) -> str:
    """One line of figures: modules, edges, layers, circles."""
    return (
        f"{len(graph.modules)} modules, {graph.edge_count} edges, {layers(graph)} layers, {len(circles(graph))} circles"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(Path(__file__).resolve().parents[1] / "backend"))
    parser.add_argument("--edges", action="store_true", help="print every edge too")
    args = parser.parse_args(argv)
    package_dir = Path(args.package)
    if not (package_dir / "__init__.py").is_file():
        print(
            f"import_graph: {package_dir} is not a package (no __init__.py); give the package directory",
            file=sys.stderr,
        )
        return 2
    graph = build(package_dir)
    print(f"modules: {summary(graph)}")
    print(f"packages: {summary(package_graph(graph))}")
    print("deepest chain: " + " -> ".join(longest_chain(graph)))
    for group in circles(graph):
        print("circle: " + " <-> ".join(group))
    for edge in upward_imports(graph):
        print(f"upward: {edge}")
    too_deep = layers(graph) > MAX_LAYERS
    if too_deep:
        print(f"deep: the module graph is {layers(graph)} layers deep, at most {MAX_LAYERS} allowed")
    violations = http_violations(graph)
    for module, clients in violations.items():
        print(f"http: {module} imports {', '.join(clients)} but is not one of the modules allowed to")
    if args.edges:
        for module in graph.modules:
            for target in sorted(graph.edges[module]):
                print(f"{module} -> {target}")
    return 1 if circles(graph) or violations or upward_imports(graph) or too_deep else 0


if __name__ == "__main__":
    sys.exit(main())

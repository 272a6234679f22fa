"""The shape of backend/: no import circles, a pure labeling core, HTTP clients only where they belong.

The checker (tools/import_graph.py) is tested first on small packages written here, so a pass on backend/
means something: it does find circles (also through deferred imports) and skips TYPE_CHECKING imports.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import tempfile
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = import_graph  # dataclasses look their module up while the class is made
_spec.loader.exec_module(import_graph)

# The pure core does no I/O (DESIGN.md): no Redis, queue, model client, HTTP client or web framework.
IO_MODULES = (
    "redis",
    "rq",
    "openai",
    "httpx",
    "requests",
    "urllib.request",
    "label_studio_ml",
    "flask",
    "label_studio_sdk.client",
)


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package


# --- the checker itself ---------------------------------------------------------------------------------------


def test_a_circle_through_a_deferred_import_is_found(tmp_path):
    package = write_package(
        tmp_path,
        {
            "a.py": "from . import b\n",
            "b.py": "def late():\n    from .c import thing\n    return thing\n",
            "c.py": "from .a import x\n",
            "d.py": "import pkg.a\n",
        },
    )
    graph = import_graph.build(package)
    assert import_graph.circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert graph.edges["pkg.d"] == {"pkg.a"}
    assert graph.edge_count == 4
    assert import_graph.layers(graph) == 2  # d on top of the circle, which counts as one layer


def test_type_checking_imports_are_not_edges_but_their_else_branch_is(tmp_path):
    package = write_package(
        tmp_path,
        {
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
            "else:\n    from . import c\n",
            "b.py": "from .a import A\n",
            "c.py": "",
            "sub/__init__.py": "from .inner import thing\n",
            "sub/inner.py": "from .. import c\n",
        },
    )
    graph = import_graph.build(package)
    assert import_graph.circles(graph) == []
    assert graph.edges["pkg.a"] == {"pkg.c"}
    assert graph.edges["pkg.sub"] == {"pkg.sub.inner"}  # "." in a package's __init__ is the package itself
    assert graph.edges["pkg.sub.inner"] == {"pkg.c"}
    assert import_graph.layers(graph) == 3  # b -> a -> c and sub -> inner -> c
    assert import_graph.longest_chain(graph) in (["pkg.b", "pkg.a", "pkg.c"], ["pkg.sub", "pkg.sub.inner", "pkg.c"])


def test_an_http_client_outside_the_allowed_modules_is_reported(tmp_path):
    package = write_package(tmp_path, {"client.py": "import httpx\n", "core.py": "def f():\n    import requests\n"})
    graph = import_graph.build(package)
    assert import_graph.http_violations(graph, {"pkg.client": "the client"}) == {"pkg.core": ["requests"]}


def test_an_import_up_the_layers_or_across_one_layer_is_reported(tmp_path):
    package = write_package(
        tmp_path,
        {
            "top/__init__.py": "",
            "top/a.py": "from pkg.low import b\n",
            "low/__init__.py": "",
            "low/b.py": "from pkg.top import a\n",
            "side/__init__.py": "",
            "side/c.py": "from pkg.low import b\n",
        },
    )
    layers = [("pkg.top",), ("pkg.low", "pkg.side")]
    assert import_graph.upward_imports(import_graph.build(package), layers) == [
        "pkg.low.b -> pkg.top.a",
        "pkg.side.c -> pkg.low.b",
    ]


def _has_cycle(nodes: int, edges: set[tuple[int, int]]) -> bool:
    """Reference: a cycle exists when some node reaches itself (transitive closure, fine for a few nodes)."""
    reach = {(a, b) for a, b in edges}
    for k, i, j in itertools.product(range(nodes), repeat=3):
        if (i, k) in reach and (k, j) in reach:
            reach.add((i, j))
    return any((n, n) in reach for n in range(nodes))


def _longest(nodes: int, edges: set[tuple[int, int]]) -> int:
    """Reference: the most modules on one path of an acyclic graph, by trying every path."""

    def from_(node: int) -> int:
        return 1 + max((from_(b) for a, b in edges if a == node), default=0)

    return max(from_(n) for n in range(nodes))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=12))
    )
)
def test_circles_and_layers_agree_with_a_brute_force_reference(graph_spec):
    nodes, edges = graph_spec
    edges = {(a, b) for a, b in edges if a != b}
    files = {f"m{n}.py": "".join(f"from . import m{b}\n" for a, b in sorted(edges) if a == n) for n in range(nodes)}
    with tempfile.TemporaryDirectory() as directory:
        graph = import_graph.build(write_package(Path(directory), files))
    assert graph.edge_count == len(edges)
    assert bool(import_graph.circles(graph)) == _has_cycle(nodes, edges)
    if not _has_cycle(nodes, edges):
        assert import_graph.layers(graph) == _longest(nodes, edges)
        assert len(import_graph.longest_chain(graph)) == import_graph.layers(graph)


# --- backend/ --------------------------------------------------------------------------------------------------

BACKEND = import_graph.build(ROOT / "backend")


def test_backend_has_no_import_circles():
    print(
        f"\nimport graph of backend/: {import_graph.summary(BACKEND)}; "
        f"packages: {import_graph.summary(import_graph.package_graph(BACKEND))}"
    )
    assert import_graph.circles(BACKEND) == [], (
        "import circles (break them: a type-only import goes under TYPE_CHECKING, a job is enqueued by its dotted path)"
    )


def test_packages_import_only_down_their_layers_and_stay_shallow():
    packages = import_graph.package_graph(BACKEND)
    assert import_graph.upward_imports(BACKEND) == [], "an import up the layers (tools/import_graph.py LAYERS)"
    assert import_graph.circles(packages) == [] and import_graph.layers(packages) <= 10
    every = {p for layer in import_graph.LAYERS for p in layer}
    assert {import_graph.package_of(m, import_graph.LAYERS) for m in BACKEND.modules} == every, (
        "a package that is in no layer, or a layer that names no package"
    )


def test_the_module_graph_stays_at_most_ten_layers_deep():
    """A chain of imports longer than this means a module reaches through others for something that belongs lower
    (a type-only import that runs, a helper in the wrong module, orchestration mixed with records)."""
    assert import_graph.layers(BACKEND) <= import_graph.MAX_LAYERS, (
        f"the module graph is {import_graph.layers(BACKEND)} layers deep (at most {import_graph.MAX_LAYERS}); "
        "the deepest chain: " + " -> ".join(import_graph.longest_chain(BACKEND))
    )


def test_the_compatibility_aliases_only_reexport_what_rq_may_hold():
    import importlib

    for alias in import_graph.COMPAT_ALIASES:
        old, new = (
            importlib.import_module(alias),
            importlib.import_module(alias.replace("backend.", "backend.pipeline.")),
        )
        names = [n for n in dir(old) if not n.startswith("_")]
        assert names and all(getattr(old, n) is getattr(new, n) for n in names)


def test_the_labeling_core_imports_nothing_that_does_io():
    core = {
        m: sorted(i for i in BACKEND.external[m] if any(i == io or i.startswith(io + ".") for io in IO_MODULES))
        for m in BACKEND.modules
        if m.startswith("backend.labeling")
    }
    assert {m: found for m, found in core.items() if found} == {}
    outward = {
        m: sorted(t for t in BACKEND.edges[m] if not t.startswith("backend.labeling"))
        for m in BACKEND.modules
        if m.startswith("backend.labeling")
    }
    assert {m: found for m, found in outward.items() if found} == {}, "labeling/ imports nothing above it"


def test_only_the_allowed_modules_import_an_http_client():
    assert import_graph.http_violations(BACKEND) == {}, "talk to Label Studio through backend/studio/client.py"
    assert set(import_graph.HTTP_ALLOWED) <= set(BACKEND.modules), "an allowed module that no longer exists"

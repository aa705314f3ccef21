"""The product's imports run one way: no cycles, and each package imports only the layers
docs/ARCHITECTURE.md ("What may import what") allows it.

The graph comes from scripts/importgraph.py (ast over the source, nothing imported);
`python scripts/importgraph.py --all` prints what these tests find. The first tests check
that reader on small trees made here, so a reader that found nothing cannot pass the
checks on the real tree.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_importgraph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("importgraph", ROOT / "scripts" / "importgraph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


ig = _load_importgraph()
ALL_KINDS = frozenset({ig.MODULE_LEVEL, ig.DEFERRED, ig.TYPING})

# Imports that cross a layer on purpose, each with why. One that no longer happens fails
# test_known_exceptions_still_exist, so the list cannot go stale.
KNOWN_EXCEPTIONS = {
    # `emberfs bench` is a subcommand of the client's CLI: it builds its parser from the
    # harness's options at start and runs the harness (a deferred import, so the CLI does
    # not load it otherwise). Moving the command out of the client would need an entry
    # point of its own.
    ("emberfs.client.commands.bench", "emberfs.bench.options"),
    ("emberfs.client.commands.bench", "emberfs.bench.harness"),
    # `emberfs local-cluster --engine etcd` starts a local etcd with the launcher that lives
    # beside the metaserver's etcd client (it checks each member's health through it), as
    # the command starts the metaserver itself; a deferred import, only with --engine etcd.
    ("emberfs.client.commands.localcluster", "emberfs.metaserver.etcdkv.launch"),
}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


# -- the reader, on small trees ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "edges"),
    [
        ("from . import b\n", {("a", "b", "module")}),
        ("from .b import thing\n", {("a", "b", "module")}),
        ("from emberfs.common import b\n", {("a", "b", "module")}),
        ("import emberfs.common.b\n", {("a", "b", "module")}),
        ("from emberfs.common.b import thing\n", {("a", "b", "module")}),
        ("def f():\n    from . import b\n", {("a", "b", "deferred")}),
        ("async def f():\n    from . import b\n", {("a", "b", "deferred")}),
        ("class C:\n    def f(self):\n        from . import b\n", {("a", "b", "deferred")}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n", {("a", "b", "typing")}),
        ("import typing\nif typing.TYPE_CHECKING:\n    from . import b\n", {("a", "b", "typing")}),
        ("if TYPE_CHECKING:\n    pass\nelse:\n    from . import b\n", {("a", "b", "module")}),
        ("try:\n    from . import b\nexcept ImportError:\n    from . import c\n",
         {("a", "b", "module"), ("a", "c", "module")}),
        ("class C:\n    from . import b\n", {("a", "b", "module")}),
        ("with x:\n    from . import b\n", {("a", "b", "module")}),
        ("import os\nfrom collections import abc\n", set()),  # not ours: no edge
        ("from . import a\n", set()),  # itself
    ],
)
def test_reader_classifies_each_import(tmp_path: Path, source: str, edges: set[tuple[str, str, str]]) -> None:
    root = _tree(tmp_path, {"common/__init__.py": "", "common/a.py": source, "common/b.py": "", "common/c.py": ""})
    found = {(e.importer.rsplit(".", 1)[1], e.imported.rsplit(".", 1)[1], e.kind) for e in ig.build_graph(root)}
    assert found == edges


def test_reader_resolves_relative_imports_from_a_package(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "metaserver/__init__.py": "",
        "metaserver/store.py": "",
        "metaserver/ops/__init__.py": "from . import create\nfrom ..store import Store\n",
        "metaserver/ops/create.py": "from .. import store\n",
    })
    found = {(e.importer, e.imported) for e in ig.build_graph(root)}
    assert found == {
        ("emberfs.metaserver.ops", "emberfs.metaserver.ops.create"),
        ("emberfs.metaserver.ops", "emberfs.metaserver.store"),
        ("emberfs.metaserver.ops.create", "emberfs.metaserver.store"),
    }


def test_cycles_are_found_per_kind_of_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "client/__init__.py": "",
        "client/a.py": "from . import b\n",
        "client/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
        "client/c.py": "from . import d\n",
        "client/d.py": "from . import e\n",
        "client/e.py": "from . import c\n",
    })
    edges = ig.build_graph(root)
    assert ig.find_cycles(edges, frozenset({ig.MODULE_LEVEL})) == [
        ["emberfs.client.c", "emberfs.client.d", "emberfs.client.e"]]
    assert ig.find_cycles(edges, ALL_KINDS) == [
        ["emberfs.client.a", "emberfs.client.b"], ["emberfs.client.c", "emberfs.client.d", "emberfs.client.e"]]


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("common", "proto", True),
        ("common", "storage", False),
        ("proto", "common", False),
        ("storage", "common", True),
        ("storage", "metaserver", False),
        ("metaserver", "storage", False),
        ("client", "metaserver", False),
        ("client", "bench", False),
        ("bench", "client", True),
        ("bench", "storage", True),
    ],
)
def test_layer_rules(tmp_path: Path, importer: str, imported: str, allowed: bool) -> None:
    root = _tree(tmp_path, {
        f"{importer}/__init__.py": "",
        f"{importer}/x.py": f"from emberfs.{imported} import y\n",
        f"{imported}/__init__.py": "",
        f"{imported}/y.py": "",
    })
    breaks = ig.layer_breaks(ig.build_graph(root))
    assert (breaks == []) is allowed


# -- the product ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edges() -> list[Any]:
    return ig.build_graph(ROOT)


def test_the_graph_is_the_real_one(edges: list[Any]) -> None:
    pairs = {(e.importer, e.imported) for e in edges}
    assert len(pairs) > 300
    assert ("emberfs.storage.craq", "emberfs.storage.localtargets") in pairs
    assert ("emberfs.client._client", "emberfs.client._file") in pairs


def test_no_cycle_among_module_level_imports(edges: list[Any]) -> None:
    cycles = ig.find_cycles(edges, frozenset({ig.MODULE_LEVEL}))
    assert cycles == [], f"import cycles (python scripts/importgraph.py shows the edges): {cycles}"


def test_no_cycle_even_through_deferred_or_type_checking_imports(edges: list[Any]) -> None:
    # An import inside a function or under TYPE_CHECKING hides a cycle from Python, not
    # from a reader: the two modules are still one unit. Break it with a protocol or an
    # interface module both sides import (client/_filehost.py, storage/localtargets.py).
    cycles = ig.find_cycles(edges, ALL_KINDS)
    assert cycles == [], f"import cycles (python scripts/importgraph.py --all shows the edges): {cycles}"


def test_each_package_imports_only_the_layers_below_it(edges: list[Any]) -> None:
    breaks = [
        f"{e.importer}:{e.line} imports {e.imported} ({e.kind})"
        for e in ig.layer_breaks(edges)
        if (e.importer, e.imported) not in KNOWN_EXCEPTIONS
    ]
    assert breaks == [], "imports across layers (docs/ARCHITECTURE.md, 'What may import what'): " + "; ".join(breaks)


def test_known_exceptions_still_exist(edges: list[Any]) -> None:
    found = {(e.importer, e.imported) for e in ig.layer_breaks(edges)}
    assert found >= KNOWN_EXCEPTIONS, f"no longer imported, drop from KNOWN_EXCEPTIONS: {KNOWN_EXCEPTIONS - found}"

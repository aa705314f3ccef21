"""Model-based test: random namespace operations against the real store and a dumb
dict-based reference, comparing every result and every error class.

The reference keeps directories as dicts of child nodes; files carry a link count,
symlinks their target. Operations run as root (permissions have their own tests).
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from emberfs.common import errors as e
from emberfs.common.paths import MAX_SYMLINK_DEPTH
from emberfs.metaserver.config import MetaConfig
from emberfs.metaserver.store import MetaStore
from emberfs.proto import meta_pb2

NAMES = ["a", "b", "c"]


class Node:
    def __init__(self, kind: int, parent: Node | None = None, target: str = "") -> None:
        self.kind = kind
        self.children: dict[str, Node] = {}
        self.parent = parent  # directories only
        self.target = target  # symlinks only
        self.links = 1
        self.ino: int | None = None  # the real inode id, learned on first sight

    @property
    def nlink(self) -> int:
        if self.kind == meta_pb2.DIRECTORY:
            return 2 + sum(c.kind == meta_pb2.DIRECTORY for c in self.children.values())
        return self.links


def is_dir(node: Node | None) -> bool:
    return node is not None and node.kind == meta_pb2.DIRECTORY


class Model:
    """The reference namespace. Methods raise the same error classes the server should."""

    def __init__(self) -> None:
        self.root = Node(meta_pb2.DIRECTORY)
        self.root.ino = 1

    # -- resolution --------------------------------------------------------------
    def walk(self, parts: list[str], follow_last: bool, start: Node | None = None) -> tuple[Any, Any, Any]:
        cur, todo, links = start or self.root, list(parts), 0
        parent = name = None
        while todo:
            part = todo.pop(0)
            if not is_dir(cur):
                raise e.NotADirectory(part)
            if part in ("", "."):
                parent = name = None
                continue
            if part == "..":
                cur, parent, name = cur.parent or cur, None, None
                continue
            child = cur.children.get(part)
            if child is None:
                if not todo:
                    return None, cur, part
                raise e.NotFound(part)
            if child.kind == meta_pb2.SYMLINK and (todo or follow_last):
                links += 1
                if links > MAX_SYMLINK_DEPTH:
                    raise e.TooManySymlinks(part)
                if child.target.startswith("/"):
                    cur = self.root
                todo = child.target.split("/") + todo
                parent = name = None
                continue
            parent, name, cur = cur, part, child
        return cur, parent, name

    def lookup(self, parts: list[str], follow: bool = True) -> Node:
        node, _, _ = self.walk(parts, follow)
        if node is None:
            raise e.NotFound("/".join(parts))
        return node

    def parent_dir(self, parts: list[str]) -> Node:
        node = self.lookup(parts[:-1])
        if not is_dir(node):
            raise e.NotADirectory("/".join(parts[:-1]))
        return node

    @staticmethod
    def attach(parent: Node, name: str, node: Node) -> Node:
        parent.children[name] = node
        if is_dir(node):
            node.parent = parent
        return node

    # -- operations ----------------------------------------------------------------
    def mkdir(self, parts: list[str], parents: bool, exist_ok: bool) -> Node:
        if not parts:
            if exist_ok:
                return self.root
            raise e.AlreadyExists("/")
        if parents:
            cur = self.root
            for part in parts[:-1]:
                if part not in cur.children:
                    cur = self.attach(cur, part, Node(meta_pb2.DIRECTORY))
                    continue
                node = self.walk([part], True, cur)[0]
                if node is None:
                    raise e.NotFound(part)
                if not is_dir(node):
                    raise e.NotADirectory(part)
                cur = node
        else:
            cur = self.parent_dir(parts)
        name = parts[-1]
        if name not in cur.children:
            return self.attach(cur, name, Node(meta_pb2.DIRECTORY))
        node = self.walk([name], True, cur)[0] if exist_ok else None
        if not is_dir(node):
            raise e.AlreadyExists(name)
        return node

    def create(self, parts: list[str], exclusive: bool) -> Node:
        if not parts:
            raise e.AlreadyExists("/") if exclusive else e.IsADirectory("/")
        parent = self.parent_dir(parts)
        node, where, name = self.walk(parts[-1:], not exclusive, parent)
        if node is not None:
            if exclusive:
                raise e.AlreadyExists(name)
            if is_dir(node):
                raise e.IsADirectory(name)
            return node
        return self.attach(where, name, Node(meta_pb2.FILE))

    def drop(self, node: Node) -> None:
        node.links -= 1

    def remove(self, parts: list[str], kind: int) -> int:
        if not parts:
            raise e.Busy("/")
        parent = self.parent_dir(parts)
        node = parent.children.get(parts[-1])
        if node is None:
            raise e.NotFound(parts[-1])
        if is_dir(node):
            if kind == meta_pb2.NON_DIRECTORY:
                raise e.IsADirectory(parts[-1])
            if kind == meta_pb2.EMPTY_DIRECTORY and node.children:
                raise e.DirectoryNotEmpty(parts[-1])
        elif kind == meta_pb2.EMPTY_DIRECTORY:
            raise e.NotADirectory(parts[-1])
        del parent.children[parts[-1]]
        return self._destroy(node)

    def _destroy(self, node: Node) -> int:
        count = 1
        for child in node.children.values():
            count += self._destroy(child)
        self.drop(node)
        return count

    def rename(self, src: list[str], dst: list[str]) -> Node:
        if not src or not dst:
            raise e.Busy("/")
        sp = self.parent_dir(src)
        node = sp.children.get(src[-1])
        if node is None:
            raise e.NotFound(src[-1])
        dp = self.parent_dir(dst)
        old = dp.children.get(dst[-1])
        if old is node:
            return node
        if is_dir(node):
            up: Node | None = dp
            while up is not None:
                if up is node:
                    raise e.InvalidArgument("into own subtree")
                up = up.parent
        if old is not None:
            if is_dir(old):
                if not is_dir(node):
                    raise e.IsADirectory(dst[-1])
                if old.children:
                    raise e.DirectoryNotEmpty(dst[-1])
            elif is_dir(node):
                raise e.NotADirectory(dst[-1])
            self.drop(old)
        del sp.children[src[-1]]
        return self.attach(dp, dst[-1], node)

    def link(self, src: list[str], dst: list[str]) -> Node:
        node = self.lookup(src, follow=False)
        if not dst:
            raise e.AlreadyExists("/")
        dp = self.parent_dir(dst)
        if dst[-1] in dp.children:
            raise e.AlreadyExists(dst[-1])
        if is_dir(node):
            raise e.NotPermitted("link to a directory")
        node.links += 1
        return self.attach(dp, dst[-1], node)

    def symlink(self, target: str, parts: list[str]) -> Node:
        if not parts:
            raise e.AlreadyExists("/")
        dp = self.parent_dir(parts)
        if parts[-1] in dp.children:
            raise e.AlreadyExists(parts[-1])
        return self.attach(dp, parts[-1], Node(meta_pb2.SYMLINK, target=target))

    def listdir(self, parts: list[str]) -> list[str]:
        node = self.lookup(parts)
        if not is_dir(node):
            raise e.NotADirectory("/".join(parts))
        return sorted(node.children, key=lambda n: n.encode())

    def counts(self) -> tuple[int, int, int]:
        seen: dict[int, Node] = {}
        stack = [self.root]
        while stack:
            node = stack.pop()
            seen[id(node)] = node
            stack.extend(node.children.values())
        kinds = [n.kind for n in seen.values()]
        return kinds.count(meta_pb2.FILE), kinds.count(meta_pb2.DIRECTORY), kinds.count(meta_pb2.SYMLINK)


paths = st.lists(st.sampled_from(NAMES), min_size=0, max_size=3)
nonroot_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)
link_targets = st.one_of(
    paths.map(lambda p: "/" + "/".join(p)),
    st.lists(st.sampled_from(NAMES + ["..", "."]), min_size=1, max_size=3).map("/".join),
)
kinds = st.sampled_from([meta_pb2.NON_DIRECTORY, meta_pb2.EMPTY_DIRECTORY, meta_pb2.RECURSIVE])


class NamespaceMachine(RuleBasedStateMachine):
    ns_factory: Any = None  # set by the test: the conftest's Ns class

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="emberfs-model-")
        self.store = MetaStore(MetaConfig(data_dir=self.tmp, map_size=1 << 20))
        self.ns = self.ns_factory(self.store)
        self.model = Model()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def both(self, real: Any, model: Any) -> tuple[Any, Any]:
        """Run both sides; they must agree on success or on the error class."""
        try:
            expected = model()
        except e.EmberError as exc:
            expected = exc
        try:
            got = real()
        except e.EmberError as exc:
            got = exc
        if isinstance(expected, Exception) or isinstance(got, Exception):
            assert type(got) is type(expected), f"store: {got!r}, model: {expected!r}"
            return None, None
        return got, expected

    def same_node(self, inode: meta_pb2.Inode, node: Node) -> None:
        assert inode.type == node.kind
        assert inode.nlink == node.nlink, (inode, node.nlink)
        if node.ino is None:
            node.ino = inode.inode_id
        assert inode.inode_id == node.ino
        if node.kind == meta_pb2.SYMLINK:
            assert inode.symlink_target == node.target

    @staticmethod
    def path(parts: list[str]) -> str:
        return "/" + "/".join(parts)

    @rule(parts=paths, parents=st.booleans(), exist_ok=st.booleans())
    def mkdir(self, parts: list[str], parents: bool, exist_ok: bool) -> None:
        got, want = self.both(
            lambda: self.ns.mkdir(self.path(parts), parents=parents, exist_ok=exist_ok),
            lambda: self.model.mkdir(parts, parents, exist_ok),
        )
        if got is not None:
            self.same_node(got, want)

    @rule(parts=paths, exclusive=st.booleans())
    def create(self, parts: list[str], exclusive: bool) -> None:
        got, want = self.both(
            lambda: self.ns.create(self.path(parts), exclusive=exclusive).inode,
            lambda: self.model.create(parts, exclusive),
        )
        if got is not None:
            self.same_node(got, want)

    @rule(parts=paths, kind=kinds)
    def remove(self, parts: list[str], kind: int) -> None:
        got, want = self.both(
            lambda: self.ns.remove(self.path(parts), kind), lambda: self.model.remove(parts, kind)
        )
        assert got == want

    @rule(src=paths, dst=paths)
    def rename(self, src: list[str], dst: list[str]) -> None:
        got, want = self.both(
            lambda: self.ns.rename(self.path(src), self.path(dst)), lambda: self.model.rename(src, dst)
        )
        if got is not None:
            self.same_node(got, want)

    @rule(src=paths, dst=paths)
    def link(self, src: list[str], dst: list[str]) -> None:
        got, want = self.both(
            lambda: self.ns.link(self.path(src), self.path(dst)), lambda: self.model.link(src, dst)
        )
        if got is not None:
            self.same_node(got, want)

    @rule(link_target=link_targets, parts=paths)
    def symlink(self, link_target: str, parts: list[str]) -> None:
        target = link_target
        got, want = self.both(
            lambda: self.ns.symlink(target, self.path(parts)), lambda: self.model.symlink(target, parts)
        )
        if got is not None:
            self.same_node(got, want)

    @rule(parts=paths)
    def listdir(self, parts: list[str]) -> None:
        got, want = self.both(lambda: self.ns.names(self.path(parts)), lambda: self.model.listdir(parts))
        assert got == want

    @rule(parts=paths, follow=st.booleans())
    def stat(self, parts: list[str], follow: bool) -> None:
        got, want = self.both(
            lambda: self.ns.stat(self.path(parts), follow=follow), lambda: self.model.lookup(parts, follow)
        )
        if got is not None:
            self.same_node(got, want)

    @invariant()
    def counters_match(self) -> None:
        fs = self.ns.statfs()
        assert (fs.files, fs.directories, fs.symlinks) == self.model.counts()


def test_namespace_matches_reference_model(make_ns: Any) -> None:
    class Machine(NamespaceMachine):
        ns_factory = make_ns

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=60, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )

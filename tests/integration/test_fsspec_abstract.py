"""fsspec's own conformance suites (`fsspec.tests.abstract`) on a real EmberFS cluster.

Each class mixes one of fsspec's suites into `EmberFixtures`, as fsspec documents for
a backend: `fs` is an `EmberFileSystem` of the module's `cluster3`, `fs_path` a fresh
directory per test, paths are joined with "/". The suites then copy, get, put, open
and pipe between EmberFS and a local temporary directory.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fsspec")

import fsspec.tests.abstract as abstract  # noqa: E402

from emberfs.client.fsspec import EmberFileSystem  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ember_fs(cluster3: Any) -> Iterator[EmberFileSystem]:
    fs = EmberFileSystem(address=cluster3.meta_address, skip_instance_cache=True)
    yield fs


class EmberFixtures(abstract.AbstractFixtures):  # type: ignore[misc]
    @pytest.fixture
    def fs(self, ember_fs: EmberFileSystem) -> EmberFileSystem:
        return ember_fs

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join

    @pytest.fixture
    def fs_path(self, ember_fs: EmberFileSystem) -> Iterator[str]:
        path = f"/abstract-{uuid.uuid4().hex[:12]}"
        ember_fs.mkdir(path)
        yield path
        ember_fs.rm(path, recursive=True)


class TestEmberCopy(abstract.AbstractCopyTests, EmberFixtures):  # type: ignore[misc]
    pass


class TestEmberGet(abstract.AbstractGetTests, EmberFixtures):  # type: ignore[misc]
    pass


class TestEmberPut(abstract.AbstractPutTests, EmberFixtures):  # type: ignore[misc]
    pass


class TestEmberOpen(abstract.AbstractOpenTests, EmberFixtures):  # type: ignore[misc]
    pass


class TestEmberPipe(abstract.AbstractPipeTests, EmberFixtures):  # type: ignore[misc]
    pass

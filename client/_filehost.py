"""`FileHost`: what an `EmberFile` needs of the `Client` that opened it.

The interface alone, so that `_file.py` depends on it and `_client.py` depends on
`_file.py`, never the other way round. The members are the Client's package-internal
steps a file object shares with it (metaserver calls, the attribute and capability
caches, the data path); `Client` satisfies the protocol, and mypy checks that it does
wherever a Client is handed to an EmberFile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from google.protobuf.message import Message

from emberfs.common.layout import ChunkSpan
from emberfs.proto import common_pb2, meta_pb2

from ._attrcache import AttrCache
from ._caps import CapabilityCache
from ._datapath import DataPath, FileLayout

__all__ = ["FileAttrs", "FileHost", "OpenedFile"]


class FileAttrs(NamedTuple):
    """What reads need of an Open's inode. The attribute cache keeps these, not the
    proto, which would keep its whole reply alive (twice the memory an entry)."""

    inode_id: int
    length: int
    truncate_version: int


OpenedFile = tuple[FileAttrs, FileLayout]  # what an Open for reading answered


class FileHost(Protocol):
    readahead: int  # bytes a sequential reader fetches ahead
    _attrs: AttrCache[OpenedFile]
    _caps: CapabilityCache
    _datapath: DataPath

    async def _call(
        self,
        method: str,
        build: Callable[[common_pb2.RequestHeader], Message],
        *,
        path: str | None,
        path2: str | None = None,
    ) -> Any:
        """One Meta call; failures leave as the OSError family."""

    async def _open_read(self, path: str, *, fresh: bool = False) -> OpenedFile:
        """The file at path opened for reading (fresh: asked, not from the cache)."""

    async def _file(self, path: str) -> tuple[meta_pb2.Inode, FileLayout]:
        """The regular file at path (Stat) and its chunk layout."""

    async def _read_bytes(
        self, file: FileLayout, spans: Sequence[ChunkSpan], zero_filled: list[int] | None = None
    ) -> bytes:
        """The spans' bytes as one new bytes object."""

    async def _report_length(
        self,
        method: str,
        path: str,
        session_id: int,
        inode_id: int,
        length: int,
        truncate_version: int,
        *,
        wrote: bool,
    ) -> meta_pb2.SyncResponse | meta_pb2.CloseResponse:
        """A write session's length report ("Sync" or "Close")."""

    def _file_mode(self, mode: int) -> int:
        """A new file's mode with the client's umask applied."""

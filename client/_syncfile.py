"""`SyncFile`: the blocking face of `EmberFile`, made by `SyncClient.open`.

Every call runs on the owning SyncClient's loop thread through the `RunBound` the
SyncClient hands over, bound to the Client the file was opened with: a file of a closed
or forked SyncClient refuses calls with ValueError instead of touching a dead loop.
The SyncClient is known only through that callable, so `_sync.py` imports this module
and not the other way round.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from ._file import EmberFile

__all__ = ["Closing", "RunBound", "SyncFile"]

T = TypeVar("T")


class RunBound(Protocol):
    """Run `make()` on the SyncClient's loop thread and wait for its result; ValueError
    once the Client the file was opened with is no longer that loop's (closed, forked)."""

    def __call__(self, make: Callable[[], Awaitable[T]], /) -> T: ...


class Closing(abc.ABC):
    """`with obj:` calls `obj.close()` at the end (SyncClient, SyncFile)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SyncFile(Closing):
    """A blocking binary file of a SyncClient (`SyncClient.open`); errors as `EmberFile`'s.

    One file object is for one thread at a time, as Python's own are.
    """

    def __init__(self, run: RunBound, file: EmberFile) -> None:
        self._run_bound, self._file = run, file

    def __repr__(self) -> str:
        return f"<SyncFile {self.name!r} mode={self.mode!r}{' closed' if self.closed else ''}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {self!r}: pickle the SyncClient and open the file again")

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        return self._run_bound(make)

    @property
    def name(self) -> str:
        return self._file.name

    @property
    def mode(self) -> str:
        return self._file.mode

    @property
    def closed(self) -> bool:
        return self._file.closed

    def readable(self) -> bool:
        return self._file.readable()

    def writable(self) -> bool:
        return self._file.writable()

    def seekable(self) -> bool:
        return self._file.seekable()

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        return self._run(lambda: self._file.read(size))

    def pread(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset`; the position is untouched. Safe from many threads."""
        return self._run(lambda: self._file.pread(offset, length))

    def pread_into(self, buffer: Any, offset: int) -> int:
        """Fill `buffer` from `offset` (short at EOF), without a copy; return the count."""
        return self._run(lambda: self._file.pread_into(buffer, offset))

    def readall(self) -> bytes:
        return self._run(self._file.readall)

    def readinto(self, buffer: Any) -> int:
        return self._run(lambda: self._file.readinto(buffer))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._run(lambda: self._file.write(data))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._run(lambda: self._file.seek(offset, whence))

    def flush(self) -> None:
        self._run(self._file.flush)

    def close(self) -> None:
        """Send what is buffered and end the session. Idempotent."""
        if not self._file.closed:
            self._run(self._file.close)

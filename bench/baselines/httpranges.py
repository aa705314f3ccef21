"""Record shards over HTTP: a `RangeReader` (emberfs.client.data) made of Range GETs.

What a user serving a dataset from nginx (or any HTTP server that honours Range) would
write with the standard library, so that the very same datasets run on it:

    reader = HttpRangeReader("http://127.0.0.1:8080")
    ds = IterableRecordDataset(reader, ["/train/shard-00000.rec", ...], shuffle=True)

One keep-alive `http.client` connection per process, opened on first use; a forked or
unpickled copy opens its own (the parent's socket stays the parent's). Calls from
several threads take turns on it. Each range is one request, and `read_ranges` sends
its ranges one after another: http.client neither pipelines nor multiplexes, and
coalescing neighbours is left out on purpose, so the figure is that of plain range
requests. A connection the server closed between requests (keep-alive timeout) is
reopened once and the GET repeated (a GET changes nothing).

Errors are the OSError family, naming the path: 404 is FileNotFoundError, 403
PermissionError, any other unexpected status or a broken connection OSError(EIO).
Reads follow pread(2): short at the end of the file, empty past it (HTTP 416).
"""

from __future__ import annotations

import errno
import http.client
import io
import os
import threading
import urllib.parse
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["HttpRangeReader"]

_RETRYABLE = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError, BrokenPipeError)


class HttpRangeReader:
    """The `RangeReader` calls over `base_url` (http://host:port[/prefix]); paths are
    appended to it as they are ("/train/shard-00000.rec")."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"need an http://host[:port][/prefix] URL, not {base_url!r}")
        self.base_url, self.timeout = base_url, timeout
        self._host, self._port = parts.hostname, parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<HttpRangeReader {self.base_url}>"

    def __getstate__(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["base_url"], timeout=state["timeout"])  # type: ignore[misc]

    # -- the RangeReader calls --------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        status, body, _ = self._get(path, None)
        if status != 200:
            raise _status_error(status, path)
        return body

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise OSError(errno.EINVAL, f"negative offset or length ({offset}, {length})", path)
        if length == 0:
            return b""
        status, body, content_range = self._get(path, f"bytes={offset}-{offset + length - 1}")
        if status == 206:
            if not content_range.startswith(f"bytes {offset}-") or len(body) > length:
                raise OSError(errno.EIO, f"range {offset}+{length} answered with {content_range!r}", path)
            return body
        if status == 416:  # the range starts at or past the end of the file
            return b""
        if status == 200:  # a server that ignores Range sends the whole file
            return body[offset:offset + length]
        raise _status_error(status, path)

    def read_ranges(self, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        return [self.read_range(path, offset, length) for path, offset, length in ranges]

    def open(self, path: str, mode: str = "rb") -> IO[bytes]:
        """Read-only: the whole file in memory (HTTP has no writes here)."""
        if mode != "rb":
            raise OSError(errno.EROFS, f"HTTP range reader is read-only (mode {mode!r})", path)
        return io.BytesIO(self.read_file(path))

    def close(self) -> None:
        self._after_fork()
        with self._lock:
            self._drop()

    # -- the connection -----------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: the parent's socket and lock stay the parent's (the lock may
        have been held by a parent thread at the fork)."""
        if self._pid != os.getpid():
            self._conn, self._pid, self._lock = None, os.getpid(), threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _get(self, path: str, byte_range: str | None) -> tuple[int, bytes, str]:
        """(status, body, Content-Range) of one GET; one retry on a connection the server closed."""
        url = urllib.parse.quote(self._prefix + path)
        headers = {} if byte_range is None else {"Range": byte_range}
        self._after_fork()
        with self._lock:
            for attempt in range(2):
                conn = self._connection()
                try:
                    conn.request("GET", url, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                except _RETRYABLE as exc:
                    self._drop()
                    if attempt:
                        raise OSError(errno.EIO, f"HTTP GET failed: {exc!r}", path) from exc
                    continue
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    raise OSError(errno.EIO, f"HTTP GET failed: {exc!r}", path) from exc
                if response.will_close:
                    self._drop()
                return response.status, body, response.getheader("Content-Range", "")
        raise AssertionError("unreachable: the loop returns or raises")


def _status_error(status: int, path: str) -> OSError:
    if status == 404:
        return FileNotFoundError(errno.ENOENT, "not found (HTTP 404)", path)
    if status == 403:
        return PermissionError(errno.EACCES, "forbidden (HTTP 403)", path)
    return OSError(errno.EIO, f"unexpected HTTP status {status}", path)

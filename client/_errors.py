"""The client's one error boundary: EmberFS errors become the built-in OSError family.

Inside the client everything is an `EmberError` (from client-side validation, or sent
back by a server and decoded by `from_rpc_error`). Callers only ever see:

    FileNotFoundError    ENOENT      NotFound
    FileExistsError      EEXIST      AlreadyExists
    NotADirectoryError   ENOTDIR     NotADirectory
    IsADirectoryError    EISDIR      IsADirectory
    PermissionError      EACCES/EPERM PermissionDenied, NotPermitted, Unauthenticated
    OSError              ENOTEMPTY, EINVAL, ENAMETOOLONG, ELOOP, EBUSY, ENOSPC, EIO ...
    ConnectionError      EIO         Unavailable: the server could not be reached
    TimeoutError         ETIMEDOUT   Unavailable because the call's deadline passed

each carrying the path (and the second path of a rename or link as `filename2`).
`ConnectionError` and `TimeoutError` are kept apart from EIO so that a caller (the CLI)
can tell "the metaserver is down" from "the file system said no".
"""

from __future__ import annotations

import errno as _errno

from emberfs.common.errors import EmberError, Unavailable

__all__ = ["os_error"]


def os_error(
    exc: EmberError, path: str | None, path2: str | None = None, *, timed_out: bool = False
) -> OSError:
    """The OSError a caller sees for `exc` raised while working on path (and path2)."""
    if isinstance(exc, Unavailable):
        if timed_out:
            return TimeoutError(_errno.ETIMEDOUT, f"deadline exceeded: {exc.message}", path)
        return ConnectionError(_errno.EIO, f"unavailable: {exc.message}", path)
    if path is None:
        return OSError(exc.errno, exc.message)
    # OSError(errno, ...) picks the subclass for the errno (ENOENT -> FileNotFoundError).
    return OSError(exc.errno, exc.message, path, None, path2)

"""The one error model of EmberFS, shared by servers and clients.

    EmberError                      (root; .code, .grpc_status, .errno, .retryable)
    ├── InvalidArgument             EINVAL        INVALID_ARGUMENT
    │   └── NameTooLong             ENAMETOOLONG  INVALID_ARGUMENT
    ├── NotFound                    ENOENT        NOT_FOUND
    │   └── ChunkGone               ENOENT        (the file's chunks were collected)
    ├── AlreadyExists               EEXIST        ALREADY_EXISTS
    ├── PermissionDenied            EACCES        PERMISSION_DENIED
    │   ├── NotPermitted            EPERM         PERMISSION_DENIED
    │   └── CapabilityRefused       EACCES        PERMISSION_DENIED (a storage server refused a capability)
    ├── Unauthenticated             EACCES        UNAUTHENTICATED
    ├── FailedPrecondition          EINVAL        FAILED_PRECONDITION
    │   ├── NotADirectory           ENOTDIR
    │   ├── IsADirectory            EISDIR
    │   ├── DirectoryNotEmpty       ENOTEMPTY
    │   ├── TooManySymlinks         ELOOP
    │   ├── Busy                    EBUSY
    │   ├── NotChainHead            -             (retryable: routing moved)
    │   ├── StaleChainVersion       -             (retryable: refresh routing)
    │   ├── ChunkNotCommitted       -             (retryable)
    │   ├── TargetNotServing        -             (retryable)
    │   └── ReplicaDiverged         EIO           (replicas disagree: refused, logged)
    ├── NoSpace                     ENOSPC        RESOURCE_EXHAUSTED
    ├── ChecksumMismatch            EIO           DATA_LOSS
    ├── Unavailable                 EIO           UNAVAILABLE   (retryable)
    │   └── NotPrimary              EIO           (a standby metaserver: ask another)
    └── Internal                    EIO           INTERNAL

Servers raise these; the service edge turns one into a gRPC status whose
trailing metadata carries the exact code (`emberfs-error`), and the client turns
it back with `from_rpc_error`. User-facing client calls raise `to_os_error()`,
the built-in OSError subclass that matches the errno, with the path.
"""

from __future__ import annotations

import errno as _errno
from typing import ClassVar

import grpc

__all__ = [
    "ERROR_METADATA_KEY",
    "AlreadyExists",
    "Busy",
    "CapabilityRefused",
    "ChecksumMismatch",
    "ChunkGone",
    "ChunkNotCommitted",
    "DirectoryNotEmpty",
    "EmberError",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "IsADirectory",
    "NameTooLong",
    "NoSpace",
    "NotADirectory",
    "NotChainHead",
    "NotFound",
    "NotPermitted",
    "NotPrimary",
    "PermissionDenied",
    "ReplicaDiverged",
    "StaleChainVersion",
    "TargetNotServing",
    "TooManySymlinks",
    "Unauthenticated",
    "Unavailable",
    "error_for_code",
    "from_rpc_error",
]

ERROR_METADATA_KEY = "emberfs-error"


class EmberError(Exception):
    """Root of every EmberFS error. `code` is stable on the wire."""

    code: ClassVar[str] = "Internal"
    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    errno: ClassVar[int] = _errno.EIO
    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.path = path

    def to_os_error(self, path: str | None = None) -> OSError:
        """The built-in OSError subclass for this errno, carrying the path."""
        where = path if path is not None else self.path
        if where is None:
            return OSError(self.errno, self.message)
        return OSError(self.errno, self.message, where)


class InvalidArgument(EmberError):
    code = "InvalidArgument"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    errno = _errno.EINVAL


class NameTooLong(InvalidArgument):
    code = "NameTooLong"
    errno = _errno.ENAMETOOLONG


class NotFound(EmberError):
    code = "NotFound"
    grpc_status = grpc.StatusCode.NOT_FOUND
    errno = _errno.ENOENT


class ChunkGone(NotFound):
    """An update reached a chunk whose file was deleted and collected on that target:
    nothing re-creates it (a resync skips it; a writer learns its file is gone)."""

    code = "ChunkGone"


class AlreadyExists(EmberError):
    code = "AlreadyExists"
    grpc_status = grpc.StatusCode.ALREADY_EXISTS
    errno = _errno.EEXIST


class PermissionDenied(EmberError):
    code = "PermissionDenied"
    grpc_status = grpc.StatusCode.PERMISSION_DENIED
    errno = _errno.EACCES


class NotPermitted(PermissionDenied):
    code = "NotPermitted"
    errno = _errno.EPERM


class CapabilityRefused(PermissionDenied):
    """A storage server refused the capability a chunk request carried (missing,
    forged, expired, for another inode or without the right). The client renews its
    capability from the metaserver once and retries; the metaserver's answer to that
    renewal is then the verdict."""

    code = "CapabilityRefused"


class Unauthenticated(EmberError):
    code = "Unauthenticated"
    grpc_status = grpc.StatusCode.UNAUTHENTICATED
    errno = _errno.EACCES


class FailedPrecondition(EmberError):
    code = "FailedPrecondition"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    errno = _errno.EINVAL


class NotADirectory(FailedPrecondition):
    code = "NotADirectory"
    errno = _errno.ENOTDIR


class IsADirectory(FailedPrecondition):
    code = "IsADirectory"
    errno = _errno.EISDIR


class DirectoryNotEmpty(FailedPrecondition):
    code = "DirectoryNotEmpty"
    errno = _errno.ENOTEMPTY


class TooManySymlinks(FailedPrecondition):
    code = "TooManySymlinks"
    errno = _errno.ELOOP


class Busy(FailedPrecondition):
    code = "Busy"
    errno = _errno.EBUSY


class NotChainHead(FailedPrecondition):
    """A client write reached a target that is not its chain's head."""

    code = "NotChainHead"
    retryable = True


class StaleChainVersion(FailedPrecondition):
    """The request names an older (or newer) chain version than the server holds."""

    code = "StaleChainVersion"
    retryable = True


class ChunkNotCommitted(FailedPrecondition):
    code = "ChunkNotCommitted"
    retryable = True


class TargetNotServing(FailedPrecondition):
    code = "TargetNotServing"
    retryable = True


class ReplicaDiverged(FailedPrecondition):
    """A successor's acknowledgement names other bytes (or another version) than the
    sender holds: the update is refused, never reported as a success."""

    code = "ReplicaDiverged"
    errno = _errno.EIO


class NoSpace(EmberError):
    code = "NoSpace"
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    errno = _errno.ENOSPC


class ChecksumMismatch(EmberError):
    code = "ChecksumMismatch"
    grpc_status = grpc.StatusCode.DATA_LOSS
    errno = _errno.EIO


class Unavailable(EmberError):
    code = "Unavailable"
    grpc_status = grpc.StatusCode.UNAVAILABLE
    errno = _errno.EIO
    retryable = True


class NotPrimary(Unavailable):
    """A cluster-manager call reached a standby metaserver (or a deposed primary): the
    caller tries the next metaserver address it knows."""

    code = "NotPrimary"


class Internal(EmberError):
    code = "Internal"
    grpc_status = grpc.StatusCode.INTERNAL
    errno = _errno.EIO


def _all_subclasses(cls: type[EmberError]) -> list[type[EmberError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE: dict[str, type[EmberError]] = {c.code: c for c in _all_subclasses(EmberError)}

# A status that arrives without our code (from grpc itself: deadlines, a dead
# peer, a message too large) maps to the nearest class.
_BY_STATUS: dict[grpc.StatusCode, type[EmberError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NoSpace,
    grpc.StatusCode.DATA_LOSS: ChecksumMismatch,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,
}


def error_for_code(code: str) -> type[EmberError]:
    return _BY_CODE.get(code, Internal)


def from_rpc_error(exc: grpc.RpcError) -> EmberError:
    """Turn a gRPC failure (sync or aio) back into the EmberError the server raised."""
    status = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(status)
    code = None
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_METADATA_KEY:
            code = value.decode() if isinstance(value, bytes) else value
    if code is not None:
        return error_for_code(code)(details)
    cls = _BY_STATUS.get(status, Internal)
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED and "message" in details.lower():
        cls = InvalidArgument  # grpc's own "message larger than max" refusal
    return cls(details)

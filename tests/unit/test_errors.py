"""The error model: every class maps to one status and errno, and back."""

import errno

import grpc
import pytest

from emberfs.common import errors as e

CASES = [
    # class, grpc status, errno, OSError subclass, retryable
    (e.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, errno.EINVAL, OSError, False),
    (e.NameTooLong, grpc.StatusCode.INVALID_ARGUMENT, errno.ENAMETOOLONG, OSError, False),
    (e.NotFound, grpc.StatusCode.NOT_FOUND, errno.ENOENT, FileNotFoundError, False),
    (e.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, errno.EEXIST, FileExistsError, False),
    (e.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, errno.EACCES, PermissionError, False),
    (e.NotPermitted, grpc.StatusCode.PERMISSION_DENIED, errno.EPERM, PermissionError, False),
    (e.NotADirectory, grpc.StatusCode.FAILED_PRECONDITION, errno.ENOTDIR, NotADirectoryError, False),
    (e.IsADirectory, grpc.StatusCode.FAILED_PRECONDITION, errno.EISDIR, IsADirectoryError, False),
    (e.DirectoryNotEmpty, grpc.StatusCode.FAILED_PRECONDITION, errno.ENOTEMPTY, OSError, False),
    (e.TooManySymlinks, grpc.StatusCode.FAILED_PRECONDITION, errno.ELOOP, OSError, False),
    (e.StaleChainVersion, grpc.StatusCode.FAILED_PRECONDITION, errno.EINVAL, OSError, True),
    (e.NoSpace, grpc.StatusCode.RESOURCE_EXHAUSTED, errno.ENOSPC, OSError, False),
    (e.Unavailable, grpc.StatusCode.UNAVAILABLE, errno.EIO, OSError, True),
]


@pytest.mark.parametrize("cls,status,err,oscls,retryable", CASES)
def test_mapping(cls, status, err, oscls, retryable) -> None:
    exc = cls("boom")
    assert exc.grpc_status == status
    assert exc.retryable is retryable
    os_err = exc.to_os_error("/a/b")
    assert type(os_err) is oscls and os_err.errno == err and os_err.filename == "/a/b"
    assert e.error_for_code(cls.code) is cls


class _FakeRpcError(grpc.RpcError):
    """A stand-in for what grpc raises; only the three accessors matter here."""

    def __init__(self, status, details, trailing=()):
        self._status, self._details, self._trailing = status, details, trailing

    def code(self):
        return self._status

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


def test_round_trip_through_trailing_metadata() -> None:
    rpc = _FakeRpcError(
        grpc.StatusCode.FAILED_PRECONDITION, "not empty", ((e.ERROR_METADATA_KEY, "DirectoryNotEmpty"),)
    )
    back = e.from_rpc_error(rpc)
    assert type(back) is e.DirectoryNotEmpty and back.message == "not empty"


@pytest.mark.parametrize(
    "status,cls",
    [
        (grpc.StatusCode.UNAVAILABLE, e.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, e.Unavailable),
        (grpc.StatusCode.NOT_FOUND, e.NotFound),
        (grpc.StatusCode.UNKNOWN, e.Internal),
    ],
)
def test_status_without_code_maps_to_nearest(status, cls) -> None:
    assert type(e.from_rpc_error(_FakeRpcError(status, "x"))) is cls


def test_unknown_code_is_internal() -> None:
    assert e.error_for_code("NoSuchCode") is e.Internal

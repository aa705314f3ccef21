"""Pure parts of the client: Inode -> StatResult, and EmberError -> OSError."""

import errno
import stat

import pytest

from emberfs.client import StatResult
from emberfs.client._errors import os_error
from emberfs.client._stat import stat_from_inode
from emberfs.common import errors as e
from emberfs.proto import common_pb2, meta_pb2


def _inode(**kw) -> meta_pb2.Inode:
    base = dict(inode_id=7, type=meta_pb2.FILE, mode=0o644, uid=1000, gid=100, nlink=1, length=12345,
                atime_ns=1_500_000_000_123, mtime_ns=2_000_000_000_000, ctime_ns=3_250_000_000_000,
                layout=common_pb2.Layout(chunk_size=1 << 20, stripe=2, chain_ids=[4, 9]), truncate_version=3)
    base.update(kw)
    return meta_pb2.Inode(**base)


@pytest.mark.parametrize(
    "kind,mode,check",
    [
        (meta_pb2.FILE, 0o644, stat.S_ISREG),
        (meta_pb2.DIRECTORY, 0o1777, stat.S_ISDIR),
        (meta_pb2.SYMLINK, 0o777, stat.S_ISLNK),
    ],
)
def test_type_and_permission_bits_fold_into_st_mode(kind, mode, check) -> None:
    st = stat_from_inode(_inode(type=kind, mode=mode))
    assert check(st.st_mode) and stat.S_IMODE(st.st_mode) == mode


def test_all_fields() -> None:
    st = stat_from_inode(_inode())
    assert isinstance(st, StatResult)
    assert (st.st_ino, st.st_nlink, st.st_uid, st.st_gid, st.st_size) == (7, 1, 1000, 100, 12345)
    assert st.st_atime_ns == 1_500_000_000_123 and st.st_atime == pytest.approx(1500.000000123)
    assert st.st_mtime == 2000.0 and st.st_ctime == 3250.0
    assert (st.chunk_size, st.stripe, st.chain_ids, st.truncate_version) == (1 << 20, 2, (4, 9), 3)
    with pytest.raises(AttributeError):
        st.st_size = 1  # frozen


def test_untyped_inode_is_a_server_bug() -> None:
    with pytest.raises(e.Internal):
        stat_from_inode(_inode(type=meta_pb2.INODE_TYPE_UNSPECIFIED))


OS_CASES = [
    (e.NotFound("x"), FileNotFoundError, errno.ENOENT),
    (e.AlreadyExists("x"), FileExistsError, errno.EEXIST),
    (e.NotADirectory("x"), NotADirectoryError, errno.ENOTDIR),
    (e.IsADirectory("x"), IsADirectoryError, errno.EISDIR),
    (e.PermissionDenied("x"), PermissionError, errno.EACCES),
    (e.NotPermitted("x"), PermissionError, errno.EPERM),
    (e.DirectoryNotEmpty("x"), OSError, errno.ENOTEMPTY),
    (e.InvalidArgument("x"), OSError, errno.EINVAL),
    (e.NameTooLong("x"), OSError, errno.ENAMETOOLONG),
    (e.TooManySymlinks("x"), OSError, errno.ELOOP),
    (e.Busy("x"), OSError, errno.EBUSY),
    (e.Unavailable("x"), ConnectionError, errno.EIO),
]


@pytest.mark.parametrize("exc,cls,err", OS_CASES)
def test_os_error_family(exc, cls, err) -> None:
    got = os_error(exc, "/a", "/b")
    assert type(got) is cls and got.errno == err and got.filename == "/a"
    if cls is not ConnectionError:
        assert got.filename2 == "/b"


def test_deadline_becomes_timeout_error() -> None:
    got = os_error(e.Unavailable("slow"), "/a", timed_out=True)
    assert type(got) is TimeoutError and got.errno == errno.ETIMEDOUT


def test_no_path() -> None:
    got = os_error(e.NoSpace("full"), None)
    assert got.errno == errno.ENOSPC and got.filename is None

from emberfs.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InodeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INODE_TYPE_UNSPECIFIED: _ClassVar[InodeType]
    FILE: _ClassVar[InodeType]
    DIRECTORY: _ClassVar[InodeType]
    SYMLINK: _ClassVar[InodeType]

class RemoveKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REMOVE_KIND_UNSPECIFIED: _ClassVar[RemoveKind]
    NON_DIRECTORY: _ClassVar[RemoveKind]
    EMPTY_DIRECTORY: _ClassVar[RemoveKind]
    RECURSIVE: _ClassVar[RemoveKind]
INODE_TYPE_UNSPECIFIED: InodeType
FILE: InodeType
DIRECTORY: InodeType
SYMLINK: InodeType
REMOVE_KIND_UNSPECIFIED: RemoveKind
NON_DIRECTORY: RemoveKind
EMPTY_DIRECTORY: RemoveKind
RECURSIVE: RemoveKind

class Inode(_message.Message):
    __slots__ = ("inode_id", "type", "mode", "uid", "gid", "nlink", "length", "atime_ns", "mtime_ns", "ctime_ns", "layout", "symlink_target", "truncate_version", "parent_id")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    SYMLINK_TARGET_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    type: InodeType
    mode: int
    uid: int
    gid: int
    nlink: int
    length: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    layout: _common_pb2.Layout
    symlink_target: str
    truncate_version: int
    parent_id: int
    def __init__(self, inode_id: _Optional[int] = ..., type: _Optional[_Union[InodeType, str]] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., nlink: _Optional[int] = ..., length: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., layout: _Optional[_Union[_common_pb2.Layout, _Mapping]] = ..., symlink_target: _Optional[str] = ..., truncate_version: _Optional[int] = ..., parent_id: _Optional[int] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("header", "path", "follow_symlinks")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    follow_symlinks: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., follow_symlinks: _Optional[bool] = ...) -> None: ...

class StatResponse(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("header", "path", "mode", "exclusive", "truncate", "chunk_size", "stripe", "open_for_write")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIPE_FIELD_NUMBER: _ClassVar[int]
    OPEN_FOR_WRITE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    mode: int
    exclusive: bool
    truncate: bool
    chunk_size: int
    stripe: int
    open_for_write: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., mode: _Optional[int] = ..., exclusive: _Optional[bool] = ..., truncate: _Optional[bool] = ..., chunk_size: _Optional[int] = ..., stripe: _Optional[int] = ..., open_for_write: _Optional[bool] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ("inode", "created", "session_id", "old_length", "capability")
    INODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    created: bool
    session_id: int
    old_length: int
    capability: Capability
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ..., created: _Optional[bool] = ..., session_id: _Optional[int] = ..., old_length: _Optional[int] = ..., capability: _Optional[_Union[Capability, _Mapping]] = ...) -> None: ...

class MkdirRequest(_message.Message):
    __slots__ = ("header", "path", "mode", "parents", "exist_ok", "chunk_size", "stripe")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIPE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    mode: int
    parents: bool
    exist_ok: bool
    chunk_size: int
    stripe: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., mode: _Optional[int] = ..., parents: _Optional[bool] = ..., exist_ok: _Optional[bool] = ..., chunk_size: _Optional[int] = ..., stripe: _Optional[int] = ...) -> None: ...

class MkdirResponse(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("header", "path", "kind")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    kind: RemoveKind
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., kind: _Optional[_Union[RemoveKind, str]] = ...) -> None: ...

class RemoveResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class RenameRequest(_message.Message):
    __slots__ = ("header", "src", "dst")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    src: str
    dst: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ...) -> None: ...

class RenameResponse(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("header", "path", "start_after", "limit", "with_attrs")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WITH_ATTRS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    start_after: str
    limit: int
    with_attrs: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., start_after: _Optional[str] = ..., limit: _Optional[int] = ..., with_attrs: _Optional[bool] = ...) -> None: ...

class DirEntry(_message.Message):
    __slots__ = ("name", "inode_id", "type", "inode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    inode_id: int
    type: InodeType
    inode: Inode
    def __init__(self, name: _Optional[str] = ..., inode_id: _Optional[int] = ..., type: _Optional[_Union[InodeType, str]] = ..., inode: _Optional[_Union[Inode, _Mapping]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("entries", "more")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DirEntry]
    more: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[DirEntry, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class SymlinkRequest(_message.Message):
    __slots__ = ("header", "target", "path")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    target: str
    path: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., target: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class SymlinkResponse(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ...) -> None: ...

class ReadlinkRequest(_message.Message):
    __slots__ = ("header", "path")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ...) -> None: ...

class ReadlinkResponse(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class LinkRequest(_message.Message):
    __slots__ = ("header", "src", "dst")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    src: str
    dst: str
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ...) -> None: ...

class LinkResponse(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ...) -> None: ...

class SetAttrRequest(_message.Message):
    __slots__ = ("header", "path", "follow_symlinks", "mode", "uid", "gid", "atime_ns", "mtime_ns", "times_now")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    TIMES_NOW_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    follow_symlinks: bool
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    times_now: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., follow_symlinks: _Optional[bool] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., times_now: _Optional[bool] = ...) -> None: ...

class SetAttrResponse(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ...) -> None: ...

class TruncateRequest(_message.Message):
    __slots__ = ("header", "path", "length")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    length: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., length: _Optional[int] = ...) -> None: ...

class TruncateResponse(_message.Message):
    __slots__ = ("inode", "old_length", "capability")
    INODE_FIELD_NUMBER: _ClassVar[int]
    OLD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    old_length: int
    capability: Capability
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ..., old_length: _Optional[int] = ..., capability: _Optional[_Union[Capability, _Mapping]] = ...) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ("header", "path", "write", "truncate")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    path: str
    write: bool
    truncate: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., path: _Optional[str] = ..., write: _Optional[bool] = ..., truncate: _Optional[bool] = ...) -> None: ...

class OpenResponse(_message.Message):
    __slots__ = ("inode", "session_id", "old_length", "capability")
    INODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    session_id: int
    old_length: int
    capability: Capability
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ..., session_id: _Optional[int] = ..., old_length: _Optional[int] = ..., capability: _Optional[_Union[Capability, _Mapping]] = ...) -> None: ...

class Capability(_message.Message):
    __slots__ = ("blob", "rights", "ttl_ms")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    blob: bytes
    rights: int
    ttl_ms: int
    def __init__(self, blob: _Optional[bytes] = ..., rights: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class GetCapabilityRequest(_message.Message):
    __slots__ = ("header", "inode_id", "write")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    inode_id: int
    write: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., inode_id: _Optional[int] = ..., write: _Optional[bool] = ...) -> None: ...

class GetCapabilityResponse(_message.Message):
    __slots__ = ("capability",)
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    capability: Capability
    def __init__(self, capability: _Optional[_Union[Capability, _Mapping]] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("header", "session_id", "inode_id", "length", "wrote", "truncate_version")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    WROTE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    session_id: int
    inode_id: int
    length: int
    wrote: bool
    truncate_version: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., session_id: _Optional[int] = ..., inode_id: _Optional[int] = ..., length: _Optional[int] = ..., wrote: _Optional[bool] = ..., truncate_version: _Optional[int] = ...) -> None: ...

class CloseResponse(_message.Message):
    __slots__ = ("inode", "stale")
    INODE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    stale: bool
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ..., stale: _Optional[bool] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("header", "session_id", "inode_id", "length", "wrote", "truncate_version")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    WROTE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    session_id: int
    inode_id: int
    length: int
    wrote: bool
    truncate_version: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., session_id: _Optional[int] = ..., inode_id: _Optional[int] = ..., length: _Optional[int] = ..., wrote: _Optional[bool] = ..., truncate_version: _Optional[int] = ...) -> None: ...

class SyncResponse(_message.Message):
    __slots__ = ("inode", "stale")
    INODE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    inode: Inode
    stale: bool
    def __init__(self, inode: _Optional[_Union[Inode, _Mapping]] = ..., stale: _Optional[bool] = ...) -> None: ...

class StatFsRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class StatFsResponse(_message.Message):
    __slots__ = ("inodes", "files", "directories", "symlinks", "used_bytes", "capacity_bytes", "free_bytes")
    INODES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    DIRECTORIES_FIELD_NUMBER: _ClassVar[int]
    SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    inodes: int
    files: int
    directories: int
    symlinks: int
    used_bytes: int
    capacity_bytes: int
    free_bytes: int
    def __init__(self, inodes: _Optional[int] = ..., files: _Optional[int] = ..., directories: _Optional[int] = ..., symlinks: _Optional[int] = ..., used_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ...) -> None: ...

from emberfs.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpdateKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_KIND_UNSPECIFIED: _ClassVar[UpdateKind]
    WRITE: _ClassVar[UpdateKind]
    TRUNCATE: _ClassVar[UpdateKind]
    REPLACE: _ClassVar[UpdateKind]
    REMOVE: _ClassVar[UpdateKind]
UPDATE_KIND_UNSPECIFIED: UpdateKind
WRITE: UpdateKind
TRUNCATE: UpdateKind
REPLACE: UpdateKind
REMOVE: UpdateKind

class ChunkId(_message.Message):
    __slots__ = ("inode_id", "chunk_index")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    chunk_index: int
    def __init__(self, inode_id: _Optional[int] = ..., chunk_index: _Optional[int] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("header", "chain_id", "chain_version", "chunk", "kind", "offset", "data", "crc32c", "length", "chunk_size", "capability")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    chain_id: int
    chain_version: int
    chunk: ChunkId
    kind: UpdateKind
    offset: int
    data: bytes
    crc32c: int
    length: int
    chunk_size: int
    capability: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., chunk: _Optional[_Union[ChunkId, _Mapping]] = ..., kind: _Optional[_Union[UpdateKind, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., crc32c: _Optional[int] = ..., length: _Optional[int] = ..., chunk_size: _Optional[int] = ..., capability: _Optional[bytes] = ...) -> None: ...

class ForwardRequest(_message.Message):
    __slots__ = ("update", "update_version", "from_target", "to_target")
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    FROM_TARGET_FIELD_NUMBER: _ClassVar[int]
    TO_TARGET_FIELD_NUMBER: _ClassVar[int]
    update: WriteRequest
    update_version: int
    from_target: int
    to_target: int
    def __init__(self, update: _Optional[_Union[WriteRequest, _Mapping]] = ..., update_version: _Optional[int] = ..., from_target: _Optional[int] = ..., to_target: _Optional[int] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("commit_version", "chunk_length", "chunk_crc32c", "chunk_exists")
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CRC32C_FIELD_NUMBER: _ClassVar[int]
    CHUNK_EXISTS_FIELD_NUMBER: _ClassVar[int]
    commit_version: int
    chunk_length: int
    chunk_crc32c: int
    chunk_exists: bool
    def __init__(self, commit_version: _Optional[int] = ..., chunk_length: _Optional[int] = ..., chunk_crc32c: _Optional[int] = ..., chunk_exists: _Optional[bool] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("header", "chain_id", "chain_version", "chunk", "offset", "length", "target_id", "capability")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    chain_id: int
    chain_version: int
    chunk: ChunkId
    offset: int
    length: int
    target_id: int
    capability: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., chunk: _Optional[_Union[ChunkId, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., target_id: _Optional[int] = ..., capability: _Optional[bytes] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("data", "crc32c", "commit_version", "chunk_length", "exists")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    crc32c: int
    commit_version: int
    chunk_length: int
    exists: bool
    def __init__(self, data: _Optional[bytes] = ..., crc32c: _Optional[int] = ..., commit_version: _Optional[int] = ..., chunk_length: _Optional[int] = ..., exists: _Optional[bool] = ...) -> None: ...

class GetCommitVersionRequest(_message.Message):
    __slots__ = ("header", "chain_id", "chain_version", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    chain_id: int
    chain_version: int
    chunk: ChunkId
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., chunk: _Optional[_Union[ChunkId, _Mapping]] = ...) -> None: ...

class GetCommitVersionResponse(_message.Message):
    __slots__ = ("commit_version", "exists")
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    commit_version: int
    exists: bool
    def __init__(self, commit_version: _Optional[int] = ..., exists: _Optional[bool] = ...) -> None: ...

class RemoveChunksRequest(_message.Message):
    __slots__ = ("header", "chain_id", "chain_version", "inode_id", "target_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    chain_id: int
    chain_version: int
    inode_id: int
    target_id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., inode_id: _Optional[int] = ..., target_id: _Optional[int] = ...) -> None: ...

class RemoveChunksResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class QueryLastChunkRequest(_message.Message):
    __slots__ = ("header", "chain_id", "chain_version", "inode_id", "target_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    chain_id: int
    chain_version: int
    inode_id: int
    target_id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., inode_id: _Optional[int] = ..., target_id: _Optional[int] = ...) -> None: ...

class QueryLastChunkResponse(_message.Message):
    __slots__ = ("found", "chunk_index", "chunk_length")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    found: bool
    chunk_index: int
    chunk_length: int
    def __init__(self, found: _Optional[bool] = ..., chunk_index: _Optional[int] = ..., chunk_length: _Optional[int] = ...) -> None: ...

class TargetStatsRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class TargetStat(_message.Message):
    __slots__ = ("target_id", "chain_id", "chunks", "bytes", "capacity_bytes", "free_bytes")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    chain_id: int
    chunks: int
    bytes: int
    capacity_bytes: int
    free_bytes: int
    def __init__(self, target_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., chunks: _Optional[int] = ..., bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ...) -> None: ...

class TargetStatsResponse(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[TargetStat]
    def __init__(self, targets: _Optional[_Iterable[_Union[TargetStat, _Mapping]]] = ...) -> None: ...

class ChunkMeta(_message.Message):
    __slots__ = ("chunk", "commit_version", "length", "crc32c", "tombstone")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    COMMIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_FIELD_NUMBER: _ClassVar[int]
    chunk: ChunkId
    commit_version: int
    length: int
    crc32c: int
    tombstone: bool
    def __init__(self, chunk: _Optional[_Union[ChunkId, _Mapping]] = ..., commit_version: _Optional[int] = ..., length: _Optional[int] = ..., crc32c: _Optional[int] = ..., tombstone: _Optional[bool] = ...) -> None: ...

class SyncDumpRequest(_message.Message):
    __slots__ = ("header", "chain_id", "chain_version", "target_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    chain_id: int
    chain_version: int
    target_id: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., target_id: _Optional[int] = ...) -> None: ...

class SyncDumpResponse(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkMeta]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkMeta, _Mapping]]] = ...) -> None: ...

class SyncDoneRequest(_message.Message):
    __slots__ = ("header", "chain_id", "chain_version", "target_id", "chunks_sent", "chunks_removed")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_SENT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    chain_id: int
    chain_version: int
    target_id: int
    chunks_sent: int
    chunks_removed: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., target_id: _Optional[int] = ..., chunks_sent: _Optional[int] = ..., chunks_removed: _Optional[int] = ...) -> None: ...

class SyncDoneResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

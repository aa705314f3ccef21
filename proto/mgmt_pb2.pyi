from emberfs.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LocalTargetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCAL_STATE_UNSPECIFIED: _ClassVar[LocalTargetState]
    LOCAL_ONLINE: _ClassVar[LocalTargetState]
    LOCAL_UPTODATE: _ClassVar[LocalTargetState]
    LOCAL_OFFLINE: _ClassVar[LocalTargetState]

class PublicTargetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUBLIC_STATE_UNSPECIFIED: _ClassVar[PublicTargetState]
    SERVING: _ClassVar[PublicTargetState]
    SYNCING: _ClassVar[PublicTargetState]
    WAITING: _ClassVar[PublicTargetState]
    LASTSRV: _ClassVar[PublicTargetState]
    OFFLINE: _ClassVar[PublicTargetState]
LOCAL_STATE_UNSPECIFIED: LocalTargetState
LOCAL_ONLINE: LocalTargetState
LOCAL_UPTODATE: LocalTargetState
LOCAL_OFFLINE: LocalTargetState
PUBLIC_STATE_UNSPECIFIED: PublicTargetState
SERVING: PublicTargetState
SYNCING: PublicTargetState
WAITING: PublicTargetState
LASTSRV: PublicTargetState
OFFLINE: PublicTargetState

class TargetReport(_message.Message):
    __slots__ = ("target_id", "local_state", "capacity_bytes", "used_bytes", "chunks", "chain_version")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STATE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    local_state: LocalTargetState
    capacity_bytes: int
    used_bytes: int
    chunks: int
    chain_version: int
    def __init__(self, target_id: _Optional[int] = ..., local_state: _Optional[_Union[LocalTargetState, str]] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., chunks: _Optional[int] = ..., chain_version: _Optional[int] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("header", "node_id", "address", "targets", "bulk_address", "incarnation")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    BULK_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    node_id: int
    address: str
    targets: _containers.RepeatedCompositeFieldContainer[TargetReport]
    bulk_address: str
    incarnation: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., node_id: _Optional[int] = ..., address: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[TargetReport, _Mapping]]] = ..., bulk_address: _Optional[str] = ..., incarnation: _Optional[int] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("routing_version", "heartbeat_interval_s", "heartbeat_timeout_s")
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    routing_version: int
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    def __init__(self, routing_version: _Optional[int] = ..., heartbeat_interval_s: _Optional[float] = ..., heartbeat_timeout_s: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("header", "node_id", "targets", "routing_version", "incarnation")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    node_id: int
    targets: _containers.RepeatedCompositeFieldContainer[TargetReport]
    routing_version: int
    incarnation: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., node_id: _Optional[int] = ..., targets: _Optional[_Iterable[_Union[TargetReport, _Mapping]]] = ..., routing_version: _Optional[int] = ..., incarnation: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("routing_version", "reregister", "heartbeat_timeout_s")
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    routing_version: int
    reregister: bool
    heartbeat_timeout_s: float
    def __init__(self, routing_version: _Optional[int] = ..., reregister: _Optional[bool] = ..., heartbeat_timeout_s: _Optional[float] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "address", "bulk_address", "alive", "last_heartbeat_ms", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BULK_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    bulk_address: str
    alive: bool
    last_heartbeat_ms: int
    incarnation: int
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ..., bulk_address: _Optional[str] = ..., alive: _Optional[bool] = ..., last_heartbeat_ms: _Optional[int] = ..., incarnation: _Optional[int] = ...) -> None: ...

class TargetInfo(_message.Message):
    __slots__ = ("target_id", "node_id", "chain_id", "public_state", "local_state", "capacity_bytes", "used_bytes", "chunks")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_STATE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STATE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    node_id: int
    chain_id: int
    public_state: PublicTargetState
    local_state: LocalTargetState
    capacity_bytes: int
    used_bytes: int
    chunks: int
    def __init__(self, target_id: _Optional[int] = ..., node_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., public_state: _Optional[_Union[PublicTargetState, str]] = ..., local_state: _Optional[_Union[LocalTargetState, str]] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class ChainTarget(_message.Message):
    __slots__ = ("target_id", "public_state")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_STATE_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    public_state: PublicTargetState
    def __init__(self, target_id: _Optional[int] = ..., public_state: _Optional[_Union[PublicTargetState, str]] = ...) -> None: ...

class ChainInfo(_message.Message):
    __slots__ = ("chain_id", "chain_version", "targets")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    targets: _containers.RepeatedCompositeFieldContainer[ChainTarget]
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., targets: _Optional[_Iterable[_Union[ChainTarget, _Mapping]]] = ...) -> None: ...

class RoutingInfo(_message.Message):
    __slots__ = ("routing_version", "nodes", "targets", "chains")
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    routing_version: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    targets: _containers.RepeatedCompositeFieldContainer[TargetInfo]
    chains: _containers.RepeatedCompositeFieldContainer[ChainInfo]
    def __init__(self, routing_version: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., targets: _Optional[_Iterable[_Union[TargetInfo, _Mapping]]] = ..., chains: _Optional[_Iterable[_Union[ChainInfo, _Mapping]]] = ...) -> None: ...

class GetRoutingRequest(_message.Message):
    __slots__ = ("header", "known_version", "accept_delta")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_DELTA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    known_version: int
    accept_delta: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., known_version: _Optional[int] = ..., accept_delta: _Optional[bool] = ...) -> None: ...

class GetRoutingResponse(_message.Message):
    __slots__ = ("unchanged", "routing", "delta")
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    unchanged: bool
    routing: RoutingInfo
    delta: RoutingDelta
    def __init__(self, unchanged: _Optional[bool] = ..., routing: _Optional[_Union[RoutingInfo, _Mapping]] = ..., delta: _Optional[_Union[RoutingDelta, _Mapping]] = ...) -> None: ...

class RoutingDelta(_message.Message):
    __slots__ = ("from_version", "routing_version", "nodes", "targets", "chains", "removed_nodes", "removed_targets", "removed_chains")
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_TARGETS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_CHAINS_FIELD_NUMBER: _ClassVar[int]
    from_version: int
    routing_version: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    targets: _containers.RepeatedCompositeFieldContainer[TargetInfo]
    chains: _containers.RepeatedCompositeFieldContainer[ChainInfo]
    removed_nodes: _containers.RepeatedScalarFieldContainer[int]
    removed_targets: _containers.RepeatedScalarFieldContainer[int]
    removed_chains: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, from_version: _Optional[int] = ..., routing_version: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., targets: _Optional[_Iterable[_Union[TargetInfo, _Mapping]]] = ..., chains: _Optional[_Iterable[_Union[ChainInfo, _Mapping]]] = ..., removed_nodes: _Optional[_Iterable[int]] = ..., removed_targets: _Optional[_Iterable[int]] = ..., removed_chains: _Optional[_Iterable[int]] = ...) -> None: ...

class InitChainsRequest(_message.Message):
    __slots__ = ("header", "replicas", "chains")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    replicas: int
    chains: int
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., replicas: _Optional[int] = ..., chains: _Optional[int] = ...) -> None: ...

class InitChainsResponse(_message.Message):
    __slots__ = ("chains", "created")
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    chains: _containers.RepeatedCompositeFieldContainer[ChainInfo]
    created: bool
    def __init__(self, chains: _Optional[_Iterable[_Union[ChainInfo, _Mapping]]] = ..., created: _Optional[bool] = ...) -> None: ...

class SetTargetAdminStateRequest(_message.Message):
    __slots__ = ("header", "target_id", "offline")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    target_id: int
    offline: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., target_id: _Optional[int] = ..., offline: _Optional[bool] = ...) -> None: ...

class SetTargetAdminStateResponse(_message.Message):
    __slots__ = ("routing",)
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    routing: RoutingInfo
    def __init__(self, routing: _Optional[_Union[RoutingInfo, _Mapping]] = ...) -> None: ...

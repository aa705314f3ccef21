"""Plain records of the etcd client: what goes into a request and what comes back.

Keys and values are bytes. A range is [start, end): `end=b""` means the key alone and
`end=b"\\0"` every key from start on, as in etcd; `prefix_end(p)` is the end that
covers every key starting with p. Revisions are etcd's store revisions (one per
applied write request, shared by every key a Txn writes).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

from emberfs.common.errors import InvalidArgument

__all__ = [
    "KV",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "MemberStatus",
    "Op",
    "OpKind",
    "OpResult",
    "RangeResult",
    "TxnResult",
    "prefix_end",
]


class CompareTarget(enum.IntEnum):
    """The key field a Compare looks at (etcd's Compare.CompareTarget numbers)."""

    VERSION = 0  # writes since creation; 0: the key does not exist
    CREATE = 1  # create_revision; 0: the key does not exist
    MOD = 2  # mod_revision; 0: the key does not exist
    VALUE = 3  # the value bytes
    LEASE = 4  # the attached lease id


class CompareOp(enum.IntEnum):
    """How the key's field compares with the given value (etcd's CompareResult numbers)."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class OpKind(enum.Enum):
    GET = "get"
    PUT = "put"
    DELETE = "delete"


def _check_key(key: object, what: str = "key") -> bytes:
    if not isinstance(key, bytes):
        raise InvalidArgument(f"etcd {what} must be bytes, not {type(key).__name__}")
    return key


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key above every key that starts with `prefix` (b"\\0" when none is:
    the range then runs to the end of the key space)."""
    body = bytearray(_check_key(prefix, "prefix"))
    while body and body[-1] == 0xFF:
        body.pop()
    if not body:
        return b"\0"
    body[-1] += 1
    return bytes(body)


@dataclasses.dataclass(frozen=True)
class KV:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int = 0


class RangeResult(NamedTuple):
    """A range read: the keys found, the store revision it read at, whether the limit
    left keys out."""

    kvs: list[KV]
    revision: int
    more: bool


@dataclasses.dataclass(frozen=True)
class Compare:
    """One guard of a Txn: `target` of `key` (or of every key in [key, range_end)) `op`
    `value`. VALUE takes bytes; the other targets take an int (a revision, a version
    or a lease id). Over a range, a missing key compares as 0, so `MOD LESS rev+1` over
    [a, b) fails once any key in it was written after rev."""

    key: bytes
    target: CompareTarget
    op: CompareOp
    value: int | bytes
    range_end: bytes = b""

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_key(self.range_end, "range_end")
        object.__setattr__(self, "target", CompareTarget(self.target))
        object.__setattr__(self, "op", CompareOp(self.op))
        if self.target == CompareTarget.VALUE:
            if not isinstance(self.value, bytes):
                raise InvalidArgument("a VALUE compare takes bytes")
        elif isinstance(self.value, bool) or not isinstance(self.value, int):
            raise InvalidArgument(f"a {self.target.name} compare takes an int, not {type(self.value).__name__}")


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation of a Txn branch; build with Op.get/put/delete/delete_range."""

    kind: OpKind
    key: bytes
    value: bytes = b""
    range_end: bytes = b""
    lease: int = 0
    limit: int = 0
    keys_only: bool = False
    revision: int = 0  # a GET: read at this revision (0: the newest)
    serializable: bool = False  # a GET: answered from the member's own store (exact at an applied revision)

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_key(self.value, "value")
        _check_key(self.range_end, "range_end")
        if self.limit < 0:
            raise InvalidArgument("a range limit cannot be negative")

    @classmethod
    def get(cls, key: bytes, end: bytes = b"", *, limit: int = 0, keys_only: bool = False, revision: int = 0,
            serializable: bool = False) -> Op:
        return cls(OpKind.GET, key, range_end=end, limit=limit, keys_only=keys_only, revision=revision,
                   serializable=serializable)

    @classmethod
    def put(cls, key: bytes, value: bytes, *, lease: int = 0) -> Op:
        return cls(OpKind.PUT, key, value=value, lease=lease)

    @classmethod
    def delete(cls, key: bytes) -> Op:
        return cls(OpKind.DELETE, key)

    @classmethod
    def delete_range(cls, start: bytes, end: bytes) -> Op:
        return cls(OpKind.DELETE, start, range_end=end)


@dataclasses.dataclass(frozen=True)
class OpResult:
    """The answer to one Op of the branch that ran: a GET's keys and `more`, a
    DELETE's count of deleted keys (a PUT has neither)."""

    kind: OpKind
    kvs: list[KV] = dataclasses.field(default_factory=list)
    more: bool = False
    deleted: int = 0


@dataclasses.dataclass(frozen=True)
class TxnResult:
    """`succeeded`: every compare held and the success branch ran. `revision`: the store
    revision after the Txn (its writes' mod_revision when it wrote)."""

    succeeded: bool
    revision: int
    responses: list[OpResult]


@dataclasses.dataclass(frozen=True)
class MemberStatus:
    endpoint: str
    member_id: int
    leader: int  # the member this one takes for the leader (0: none)
    raft_term: int
    raft_index: int
    version: str
    db_size: int
    errors: tuple[str, ...]
    is_learner: bool

    @property
    def is_leader(self) -> bool:
        return self.leader != 0 and self.leader == self.member_id

"""A synchronous, thread-safe etcd v3 client over our own stubs (proto/etcd_rpc.proto).

The metaserver runs namespace operations on threads, so every call blocks and any
number of threads may share one client. There is one gRPC channel per endpoint; calls
go to the current endpoint, and a failure that says the member is unusable (refused
connection, "no leader", a timeout) moves the client on to the next. etcd members
forward writes to the leader, so any live member serves any request.

Retry rule (errors.py decides): a request that surely did not reach etcd is resent to
the next member within the call's deadline; a read is resent after any transport
failure; a write that was sent and got no verdict raises OutcomeUnknown at once and is
never resent here. Each call is bounded by `timeout` seconds and by a fixed number of
attempts. Requests over etcd's request-size limit are refused before they are sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import grpc
from google.protobuf.message import Message

from emberfs.common.errors import EmberError, InvalidArgument, NotFound, Unavailable
from emberfs.proto import etcd_rpc_pb2, etcd_rpc_pb2_grpc

from . import wire
from .errors import LimitExceeded, classify
from .model import KV, Compare, MemberStatus, Op, OpKind, RangeResult, TxnResult

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "EtcdClient", "LeaseKeeper", "parse_endpoint"]

DEFAULT_MAX_REQUEST_BYTES = 1_572_864  # etcd's --max-request-bytes default (1.5 MiB)
_GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd's server accepts this much above the limit on the gRPC layer
_REQUIRE_LEADER = (("hasleader", "true"),)  # a leaderless member refuses at once (errors.py)
_ROUNDS = 3  # attempts per endpoint within one call, at most
_ROUND_PAUSE_S = 0.05  # between rounds over every endpoint, doubled each round


def parse_endpoint(endpoint: str) -> str:
    """"host:port" from "host:port" or "http://host:port"; TLS is not supported yet."""
    text = endpoint.strip().rstrip("/")
    if text.startswith("https://"):
        raise InvalidArgument(f"etcd endpoint {endpoint!r}: TLS to etcd is not supported yet")
    text = text.removeprefix("http://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"etcd endpoint {endpoint!r} is not host:port")
    return text


class _Member:
    """One endpoint's channel and stubs."""

    def __init__(self, endpoint: str, max_request_bytes: int) -> None:
        self.endpoint = endpoint
        self.channel = grpc.insecure_channel(endpoint, options=[
            ("grpc.max_send_message_length", max_request_bytes + _GRPC_OVERHEAD_BYTES),
            ("grpc.max_receive_message_length", 2**31 - 1),
            # A restarted member is found again within about a second, not gRPC's 120 s backoff.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ])
        self.kv = etcd_rpc_pb2_grpc.KVStub(self.channel)
        self.lease = etcd_rpc_pb2_grpc.LeaseStub(self.channel)
        self.maintenance = etcd_rpc_pb2_grpc.MaintenanceStub(self.channel)


class EtcdClient:
    """Blocking etcd v3 client over `endpoints` ("host:port"); `timeout` bounds each call."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 5.0, *,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        names = [parse_endpoint(e) for e in endpoints if e.strip()]
        if not names:
            raise InvalidArgument("no etcd endpoint given")
        if timeout <= 0:
            raise InvalidArgument("the etcd call timeout must be positive")
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        self._members = [_Member(name, max_request_bytes) for name in names]
        self._by_endpoint = {m.endpoint: m for m in self._members}
        self._lock = threading.Lock()
        self._current = 0
        self._closed = False

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self._members]

    @property
    def current_endpoint(self) -> str:
        with self._lock:
            return self._members[self._current].endpoint

    def close(self) -> None:
        self._closed = True
        for member in self._members:
            member.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- KV --------------------------------------------------------------------------

    def get(self, key: bytes) -> KV | None:
        kvs = self.range(key).kvs
        return kvs[0] if kvs else None

    def range(self, start: bytes, end: bytes = b"", *, revision: int = 0, limit: int = 0,
              keys_only: bool = False, serializable: bool = False) -> RangeResult:
        """Keys in [start, end) in key order (end=b"": start alone) at `revision` (0: the
        newest); `more` says the limit left keys out. Linearizable (a raft round trip)
        unless `serializable`: then the member answers from its own store, which is exact
        for a revision it has applied (one an earlier read returned), and for a newer one
        fails with FailedPrecondition ("future revision") instead of answering stale."""
        if limit < 0:
            raise InvalidArgument("a range limit cannot be negative")
        op = Op.get(start, end)  # validates the key types
        request = wire.range_request(op.key, op.range_end, revision=revision, limit=limit, keys_only=keys_only,
                                     serializable=serializable)
        return wire.range_result(self._call(lambda m: m.kv.Range, request, mutating=False))

    def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Write one key; return the store revision of the write."""
        op = Op.put(key, value, lease=lease)
        request = etcd_rpc_pb2.PutRequest(key=op.key, value=op.value, lease=op.lease)
        response = self._call(lambda m: m.kv.Put, request, mutating=True)
        return int(response.header.revision)

    def delete_range(self, start: bytes, end: bytes = b"") -> int:
        """Delete the keys in [start, end) (end=b"": start alone); return how many went."""
        op = Op.delete_range(start, end)
        request = etcd_rpc_pb2.DeleteRangeRequest(key=op.key, range_end=op.range_end)
        return int(self._call(lambda m: m.kv.DeleteRange, request, mutating=True).deleted)

    def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        """If every compare holds run `success`, else `failure`, atomically at one revision.
        A Txn that writes and whose outcome is unknown raises OutcomeUnknown."""
        request = wire.txn_request(compares, success, failure)
        writes = any(op.kind is not OpKind.GET for op in (*success, *failure))
        return wire.txn_result(self._call(lambda m: m.kv.Txn, request, mutating=writes))

    # -- Lease -------------------------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; return its id. Resent after a lost answer: a
        lease granted by a lost attempt is never kept alive and expires after its TTL."""
        if ttl <= 0:
            raise InvalidArgument("a lease TTL must be positive")
        response = self._call(lambda m: m.lease.LeaseGrant, etcd_rpc_pb2.LeaseGrantRequest(TTL=ttl), mutating=False)
        if response.error:
            raise Unavailable(f"etcd: lease grant failed: {response.error}")
        return int(response.ID)

    def lease_revoke(self, lease_id: int) -> None:
        """Revoke the lease, deleting every key attached to it."""
        self._call(lambda m: m.lease.LeaseRevoke, etcd_rpc_pb2.LeaseRevokeRequest(ID=lease_id), mutating=True)

    def lease_keepalive_once(self, lease_id: int) -> int:
        """Renew the lease once; return its new TTL. NotFound when it has expired."""
        request = etcd_rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)

        def renew(member: _Member) -> Callable[..., Any]:
            def one(req: Message, *, timeout: float, metadata: Any) -> Any:
                stream = member.lease.LeaseKeepAlive(iter([req]), timeout=timeout, metadata=metadata)
                try:
                    for response in stream:
                        return response
                    raise _StreamEnded()
                finally:
                    stream.cancel()
            return one

        try:
            response = self._call(renew, request, mutating=False)
        except _StreamEnded:
            raise Unavailable("etcd: the keep-alive stream ended without an answer") from None
        if response.TTL <= 0:
            raise NotFound(f"etcd lease {lease_id:#x} has expired or does not exist")
        return int(response.TTL)

    def lease_time_to_live(self, lease_id: int) -> int:
        """Seconds left on the lease; -1 when it has expired or never existed."""
        request = etcd_rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id)
        return int(self._call(lambda m: m.lease.LeaseTimeToLive, request, mutating=False).TTL)

    # -- Maintenance -------------------------------------------------------------------

    def status(self, endpoint: str) -> MemberStatus:
        """Status of the one member at `endpoint` (no failover: this asks that member)."""
        name = parse_endpoint(endpoint)
        member = self._by_endpoint.get(name) or _Member(name, self.max_request_bytes)
        try:
            response = member.maintenance.Status(etcd_rpc_pb2.StatusRequest(), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise classify(exc.code(), exc.details() or "", mutating=False).error from None
        finally:
            if member is not self._by_endpoint.get(name):
                member.channel.close()
        return wire.status_from_pb(name, response)

    # -- the one path every call takes -----------------------------------------------------

    def _call(self, method: Callable[[_Member], Callable[..., Any]], request: Message, *, mutating: bool) -> Any:
        if self._closed:
            raise Unavailable("etcd client is closed")
        size = request.ByteSize()
        if size > self.max_request_bytes:
            raise LimitExceeded(
                f"etcd request of {size} bytes is over etcd's request limit of {self.max_request_bytes} bytes "
                "(--max-request-bytes): not sent", limit="max-request-bytes")
        deadline = time.monotonic() + self.timeout
        last: EmberError = Unavailable(f"etcd: no member of {self.endpoints} answered within {self.timeout} s")
        pause = _ROUND_PAUSE_S
        for attempt in range(_ROUNDS * len(self._members)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if attempt and attempt % len(self._members) == 0:  # every member failed once more
                time.sleep(min(pause, remaining))
                pause *= 2
                remaining = deadline - time.monotonic()
            with self._lock:
                index = self._current
            member = self._members[index]
            try:
                return method(member)(request, timeout=remaining, metadata=_REQUIRE_LEADER)
            except grpc.RpcError as exc:
                verdict = classify(exc.code(), exc.details() or "", mutating=mutating)
                if verdict.failover:
                    self._move_on_from(index)
                if not verdict.retry:
                    raise verdict.error from None
                last = verdict.error
        raise last

    def _move_on_from(self, index: int) -> None:
        """Next endpoint, unless another thread has moved on from this one already."""
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self._members)


class _StreamEnded(Exception):
    """The keep-alive stream closed before its answer."""


class LeaseKeeper:
    """Keeps one lease alive from a daemon thread, renewing every ttl/3 seconds.

    `lost` is set when the lease has expired (etcd says so, or no renewal succeeded for
    a whole TTL); the keeper then stops. `stop()` ends the thread (and does not revoke)."""

    def __init__(self, client: EtcdClient, lease_id: int, ttl: int) -> None:
        self.client = client
        self.lease_id = lease_id
        self.ttl = ttl
        self.lost = threading.Event()
        self.error: EmberError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"etcd-lease-{lease_id:x}", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        renewed_at = time.monotonic()
        while not self._stop.wait(self.ttl / 3):
            try:
                self.client.lease_keepalive_once(self.lease_id)
                renewed_at = time.monotonic()
            except NotFound as exc:
                self.error = exc
                break
            except EmberError as exc:
                self.error = exc
                if time.monotonic() - renewed_at < self.ttl:
                    continue
                break
        else:
            return
        self.lost.set()

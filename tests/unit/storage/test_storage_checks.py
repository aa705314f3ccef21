"""Table tests of the operator's pure pieces: request validation, chain-version and
chain-position decisions, the dedupe cache, per-chunk locks, config and local states."""

from __future__ import annotations

import asyncio

import crc32c
import pytest

from emberfs.common import errors as e
from emberfs.common.chainstate import Chain, ChainTarget, PublicState, chain_to_proto, new_chain
from emberfs.common.routing import RoutingView
from emberfs.proto import mgmt_pb2, storage_pb2
from emberfs.storage.agent import backoff_delays
from emberfs.storage.localstate import local_states
from emberfs.storage.checks import (
    ChunkLocks,
    RecentReplies,
    VersionCheck,
    check_chain_version,
    check_read,
    check_write,
    local_target,
    require_head,
)
from emberfs.storage.config import StorageConfig
from emberfs.storage.records import ChunkId, UpdateKind

K64 = 64 * 1024


def wreq(data: bytes = b"abc", *, kind: int = storage_pb2.WRITE, offset: int = 0, length: int = 0,
         chunk_size: int = K64, crc: int | None = None, chain_id: int = 1, chunk: bool = True
         ) -> storage_pb2.WriteRequest:
    req = storage_pb2.WriteRequest(chain_id=chain_id, chain_version=1, kind=kind, offset=offset, data=data,
                                   crc32c=crc32c.crc32c(data) if crc is None else crc, length=length,
                                   chunk_size=chunk_size)
    if chunk:
        req.chunk.CopyFrom(storage_pb2.ChunkId(inode_id=5, chunk_index=2))
    return req


@pytest.mark.parametrize("req, error, words", [
    (wreq(chain_id=0), e.InvalidArgument, "no chain"),
    (wreq(chunk=False), e.InvalidArgument, "no chunk"),
    (wreq(kind=0), e.InvalidArgument, "unknown update kind"),
    (wreq(kind=7), e.InvalidArgument, "unknown update kind"),
    (wreq(chunk_size=0), e.InvalidArgument, "power of two"),
    (wreq(chunk_size=K64 + 1), e.InvalidArgument, "power of two"),
    (wreq(chunk_size=32 * 1024), e.InvalidArgument, "power of two"),
    (wreq(chunk_size=128 * 1024 * 1024), e.InvalidArgument, "power of two"),
    (wreq(b"xy", offset=K64 - 1), e.InvalidArgument, "passes the chunk size"),
    (wreq(b"", offset=K64 + 1), e.InvalidArgument, "passes the chunk size"),
    (wreq(b"x", kind=storage_pb2.TRUNCATE), e.InvalidArgument, "carries no data"),
    (wreq(b"x", kind=storage_pb2.REMOVE), e.InvalidArgument, "carries no data"),
    (wreq(b"", kind=storage_pb2.TRUNCATE, length=K64 + 1), e.InvalidArgument, "truncate to"),
    (wreq(b"x", kind=storage_pb2.REPLACE, offset=3), e.InvalidArgument, "takes no offset"),
    (wreq(b"x" * (K64 + 1), kind=storage_pb2.REPLACE), e.InvalidArgument, "replace with"),
    (wreq(b"abc", crc=1), e.ChecksumMismatch, "CRC32C mismatch"),
])
def test_check_write_refuses(req: storage_pb2.WriteRequest, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        check_write(req)


@pytest.mark.parametrize("req, kind", [
    (wreq(b"x" * 10, offset=K64 - 10), UpdateKind.WRITE),
    (wreq(b""), UpdateKind.WRITE),
    (wreq(b"", kind=storage_pb2.TRUNCATE, length=K64), UpdateKind.TRUNCATE),
    (wreq(b"x" * K64, kind=storage_pb2.REPLACE), UpdateKind.REPLACE),
    (wreq(b"", kind=storage_pb2.REMOVE), UpdateKind.REMOVE),
    (wreq(b"y", chunk_size=64 * 1024 * 1024, offset=64 * 1024 * 1024 - 1), UpdateKind.WRITE),
])
def test_check_write_accepts(req: storage_pb2.WriteRequest, kind: UpdateKind) -> None:
    assert check_write(req) == (ChunkId(5, 2), kind)


@pytest.mark.parametrize("fields, words", [
    ({"chain_id": 0}, "no chain"),
    ({"length": 64 * 1024 * 1024 + 1}, "largest chunk size"),
    ({"offset": 64 * 1024 * 1024}, "past the largest"),
])
def test_check_read_refuses(fields: dict, words: str) -> None:
    req = storage_pb2.ReadRequest(chain_id=1, chunk=storage_pb2.ChunkId(inode_id=1), length=10)
    for k, v in fields.items():
        setattr(req, k, v)
    with pytest.raises(e.InvalidArgument, match=words):
        check_read(req)


CHAIN = Chain(3, 7, (ChainTarget(101, PublicState.SERVING), ChainTarget(201, PublicState.SERVING),
                     ChainTarget(301, PublicState.SYNCING)))


@pytest.mark.parametrize("version, outcome", [(7, VersionCheck.OK), (8, VersionCheck.NEWER),
                                              (100, VersionCheck.NEWER), (6, e.StaleChainVersion),
                                              (0, e.StaleChainVersion)])
def test_check_chain_version(version: int, outcome: object) -> None:
    if isinstance(outcome, type):
        with pytest.raises(outcome, match="chain 3 is at version 7"):
            check_chain_version(CHAIN, version)
    else:
        assert check_chain_version(CHAIN, version) == outcome


@pytest.mark.parametrize("local, expect", [({101}, 101), ({201, 202}, 201), ({301}, 301),
                                           ({401}, e.FailedPrecondition), (set(), e.FailedPrecondition)])
def test_local_target(local: set, expect: object) -> None:
    if isinstance(expect, type):
        with pytest.raises(expect, match="no target on node 9"):
            local_target(CHAIN, frozenset(local), 9)
    else:
        assert local_target(CHAIN, frozenset(local), 9) == expect


@pytest.mark.parametrize("target, ok", [(101, True), (201, False), (301, False)])
def test_require_head(target: int, ok: bool) -> None:
    if ok:
        require_head(CHAIN, target)
    else:
        with pytest.raises(e.NotChainHead, match="head is 101"):
            require_head(CHAIN, target)


def test_recent_replies_evicts_oldest_and_shares_in_flight_outcomes() -> None:
    async def body() -> None:
        cache = RecentReplies(capacity=2)
        for key in "abc":
            cache.put(key, key.upper())
        assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (None, "B", "C", 2)
        fut = cache.begin("d")
        assert cache.inflight("d") is fut
        cache.finish("d", "D", None)
        assert fut.result() == "D" and cache.get("d") == "D" and cache.inflight("d") is None
        fut = cache.begin("e")
        cache.finish("e", None, e.Unavailable("down"))
        assert isinstance(fut.exception(), e.Unavailable) and cache.get("e") is None  # errors not cached
        cache.begin("f")
        cache.finish("f", None, RuntimeError("nobody waits"))  # must not warn "never retrieved"

    asyncio.run(body())


def test_chunk_locks_serialise_one_chunk_and_free_entries() -> None:
    async def body() -> None:
        locks, order = ChunkLocks(), []

        async def user(key: str, tag: int) -> None:
            async with locks.hold(key):
                order.append(("in", key, tag))
                await asyncio.sleep(0.01)
                order.append(("out", key, tag))

        await asyncio.gather(user("x", 1), user("x", 2), user("y", 3))
        xs = [o for o in order if o[1] == "x"]
        assert xs == [("in", "x", 1), ("out", "x", 1), ("in", "x", 2), ("out", "x", 2)]
        assert len(locks) == 0

    asyncio.run(body())


def _view(chain: Chain, targets: dict[int, int]) -> RoutingView:
    return RoutingView(mgmt_pb2.RoutingInfo(
        routing_version=4, chains=[chain_to_proto(chain)],
        targets=[mgmt_pb2.TargetInfo(target_id=t, node_id=t // 100, chain_id=c) for t, c in targets.items()]))


@pytest.mark.parametrize("targets, closing, expect", [
    ({101: 3, 201: 3, 301: 3}, False, {101: "UPTODATE", 201: "UPTODATE", 301: "ONLINE"}),
    ({101: 0}, False, {101: "ONLINE"}),  # not in a chain yet
    ({101: 3}, True, {101: "OFFLINE"}),
    ({999: 0}, False, {999: "ONLINE"}),  # unknown to the manager
])
def test_local_states(targets: dict, closing: bool, expect: dict) -> None:
    states = local_states(_view(CHAIN, targets), targets, closing=closing)
    assert {t: mgmt_pb2.LocalTargetState.Name(s).removeprefix("LOCAL_") for t, s in states.items()} == expect


def test_local_states_on_an_empty_view_and_backoff() -> None:
    assert local_states(RoutingView.empty(), [101]) == {101: mgmt_pb2.LOCAL_ONLINE}
    delays = backoff_delays(0.1, 1.0)
    assert [round(next(delays), 2) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert new_chain(1, [101]).head == 101


GOOD = dict(listen="127.0.0.1:0", meta="127.0.0.1:9000", data_dir="/tmp/x", node_id=1)


@pytest.mark.parametrize("change, words", [
    ({"node_id": 0}, "--node-id"), ({"node_id": 2**32}, "--node-id"), ({"targets": 0}, "--targets"),
    ({"targets": 100}, "--targets"), ({"listen": "x"}, "--listen"), ({"meta": "h:0"}, "--meta"),
    ({"advertise": "h:"}, "--advertise"), ({"heartbeat_interval_s": 0.0}, "--heartbeat-interval"),
    ({"log_level": "LOUD"}, "--log-level"), ({"data_dir": ""}, "--data-dir"),
    ({"meta": "a:1,a:1"}, "--meta"), ({"meta": "a:1,"}, "--meta"), ({"meta": ""}, "--meta"),
])
def test_config_refuses(change: dict, words: str) -> None:
    with pytest.raises(e.InvalidArgument, match=words):
        StorageConfig(**{**GOOD, **change})


def test_config_defaults() -> None:
    config = StorageConfig(**GOOD)
    assert (config.targets, config.advertise, config.heartbeat_interval_s) == (1, None, 1.0)
    assert config.meta_addresses == ("127.0.0.1:9000",)


def test_config_takes_several_metaservers() -> None:
    config = StorageConfig(**{**GOOD, "meta": "a:9000, b:9000"})
    assert config.meta_addresses == ("a:9000", "b:9000")

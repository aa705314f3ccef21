"""Table tests of the client data path's pure plans: chunk pieces of a write, chunks to
remove on overwrite, hole/short-chunk filling, replica choice, the cluster readiness
check, and the routing cache's single-flight refresh."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from emberfs.client._admin import cluster_problems
from emberfs.client._datapath import bounded_all
from emberfs.client._plan import chunks_to_remove, effective_stripe, fill_chunk, pick_replica
from emberfs.client._routing import RoutingCache
from emberfs.proto import mgmt_pb2

CS = 64 * 1024


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (0, 0, []),
        (0, 5 * CS, []),  # growing removes nothing
        (5 * CS, 5 * CS, []),
        (5 * CS, 0, [0, 1, 2, 3, 4]),  # emptied: every old chunk goes
        (5 * CS, 1, [1, 2, 3, 4]),  # chunk 0 is replaced, not removed
        (5 * CS, CS, [1, 2, 3, 4]),
        (5 * CS, CS + 1, [2, 3, 4]),
        (5 * CS + 1, 5 * CS, [5]),  # one byte past the boundary had its own chunk
        (CS - 1, 1, []),
    ],
)
def test_chunks_to_remove(old: int, new: int, expected: list[int]) -> None:
    assert list(chunks_to_remove(old, new, CS)) == expected


@pytest.mark.parametrize(
    ("data", "exists", "expected", "out"),
    [
        (b"", False, 4, b"\0\0\0\0"),  # a hole reads as zeros
        (b"ab", True, 4, b"ab\0\0"),  # a short chunk is zero-filled to the file's length
        (b"abcd", True, 4, b"abcd"),
        (b"abcdef", True, 4, b"abcd"),  # bytes past the file's end are clipped
        (b"", True, 0, b""),
    ],
)
def test_fill_chunk(data: bytes, exists: bool, expected: int, out: bytes) -> None:
    assert fill_chunk(data, exists, expected) == out


@pytest.mark.parametrize(
    ("serving", "outstanding", "avoid", "turn", "expected"),
    [
        ((), {}, (), 0, None),
        ((1, 2, 3), {}, (), 0, 1),
        ((1, 2, 3), {}, (), 1, 2),  # ties go round-robin
        ((1, 2, 3), {}, (), 5, 3),
        ((1, 2, 3), {1: 2, 2: 1, 3: 0}, (), 0, 3),  # least outstanding wins
        ((1, 2, 3), {1: 1, 2: 0, 3: 0}, (), 0, 2),
        ((1, 2, 3), {}, (1,), 0, 2),  # a failed replica is skipped
        ((1, 2, 3), {}, (1, 2, 3), 0, 1),  # all failed: try them again
        ((7,), {7: 9}, (), 3, 7),
    ],
)
def test_pick_replica(serving, outstanding, avoid, turn, expected) -> None:  # type: ignore[no-untyped-def]
    assert pick_replica(serving, Counter(outstanding), avoid, turn) == expected


@pytest.mark.parametrize(
    ("stripe", "chains", "expected"), [(4, [1], 1), (2, [1, 2, 3], 2), (3, [1, 2, 3], 3), (0, [5, 6], 2)]
)
def test_effective_stripe(stripe: int, chains: list[int], expected: int) -> None:
    assert effective_stripe(stripe, chains) == expected


def _routing(states: list[list[int]], alive: int = 3) -> mgmt_pb2.RoutingInfo:
    return mgmt_pb2.RoutingInfo(
        routing_version=3,
        nodes=[mgmt_pb2.NodeInfo(node_id=i, alive=i <= alive) for i in range(1, 4)],
        chains=[
            mgmt_pb2.ChainInfo(
                chain_id=c + 1,
                chain_version=1,
                targets=[mgmt_pb2.ChainTarget(target_id=100 * (k + 1) + 1, public_state=s) for k, s in enumerate(row)],
            )
            for c, row in enumerate(states)
        ],
    )


S, Y, W = mgmt_pb2.SERVING, mgmt_pb2.SYNCING, mgmt_pb2.WAITING


@pytest.mark.parametrize(
    ("routing", "nodes", "expected"),
    [
        (_routing([]), None, ["no chains: run `emberfs admin init-chains`"]),
        (_routing([[S, S, S]]), None, []),
        (_routing([[S, S, S], [S, S, S]]), None, []),
        (_routing([[S, Y, W]]), None, ["chain 1: target 201 is SYNCING", "chain 1: target 301 is WAITING"]),
        (_routing([], alive=3), 3, []),
        (_routing([], alive=2), 3, ["2 of 3 storage nodes registered and alive"]),
    ],
)
def test_cluster_problems(routing: mgmt_pb2.RoutingInfo, nodes: int | None, expected: list[str]) -> None:
    assert cluster_problems(routing, nodes=nodes) == expected


def test_bounded_all_keeps_order_and_bound() -> None:
    in_flight = peak = 0

    async def job(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (5 - i % 5))
        in_flight -= 1
        return i

    out = asyncio.run(bounded_all([lambda i=i: job(i) for i in range(20)], 3))
    assert out == list(range(20)) and peak == 3


def test_bounded_all_raises_the_first_failure_itself() -> None:
    async def bad() -> None:
        raise FileNotFoundError("x")

    with pytest.raises(FileNotFoundError):
        asyncio.run(bounded_all([bad, lambda: asyncio.sleep(0)], 2))


def test_routing_refresh_is_single_flight_and_skips_a_newer_view() -> None:
    calls: list[int] = []

    async def fetch(known: int) -> mgmt_pb2.GetRoutingResponse:
        calls.append(known)
        await asyncio.sleep(0.01)
        return mgmt_pb2.GetRoutingResponse(routing=mgmt_pb2.RoutingInfo(routing_version=len(calls) + 4))

    async def main() -> None:
        cache = RoutingCache(fetch)
        views = await asyncio.gather(*(cache.refresh(0) for _ in range(10)))
        assert calls == [0] and {v.version for v in views} == {5}
        assert (await cache.refresh(4)).version == 5  # stale caller: already newer, no fetch
        assert calls == [0]
        assert (await cache.refresh(5)).version == 6
        assert calls == [0, 5]  # known_version sent

    asyncio.run(main())


def test_routing_unchanged_keeps_the_view() -> None:
    async def fetch(known: int) -> mgmt_pb2.GetRoutingResponse:
        if known == 0:
            return mgmt_pb2.GetRoutingResponse(routing=mgmt_pb2.RoutingInfo(routing_version=7))
        return mgmt_pb2.GetRoutingResponse(unchanged=True)

    async def main() -> None:
        cache = RoutingCache(fetch)
        first = await cache.current()
        assert (await cache.refresh()) is first and first.version == 7

    asyncio.run(main())

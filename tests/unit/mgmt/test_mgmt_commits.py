"""commits.CommitQueue: decisions written in order, as many per write as fit, and a
failed write fails every queued decision."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from emberfs.metaserver.mgmt.commits import CommitQueue, Decision, ops_of
from emberfs.metaserver.mgmt.draft import Draft
from emberfs.metaserver.mgmt.state import ClusterState, NodeRecord, TargetStats


def _draft(nodes: int, first: int = 1) -> Draft:
    """A draft that writes `nodes` node records (0: a stats-only draft, nothing to write)."""
    draft = Draft(ClusterState(), set())
    for n in range(first, first + nodes):
        draft.nodes[n] = NodeRecord(n, f"127.0.0.1:{7000 + n}")
    if not nodes:
        draft.stats[101] = TargetStats(1, 0, 0)
    return draft


def test_ops_count_the_records_and_the_version_keys() -> None:
    assert ops_of(_draft(3)) == 5
    assert ops_of(_draft(0)) == 0


def test_decisions_are_written_in_order_as_many_per_write_as_fit() -> None:
    async def body() -> None:
        writes: list[list[int]] = []
        gate = asyncio.Event()
        published: list[int] = []

        async def persist(batch: Sequence[Decision]) -> None:
            await gate.wait()
            writes.append([min(d.draft.nodes, default=0) for d in batch])

        queue = CommitQueue(persist, lambda exc: None, max_ops=10)
        futures = []
        for i, size in enumerate((3, 3, 3, 0, 3, 12)):  # 5 ops each, 2 for none; 14 alone
            draft = _draft(size, first=10 * i + 1)
            futures.append(queue.add(Decision(draft, False, lambda i=i: published.append(i))))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*futures)
        # The first write took what was queued when it began, up to 10 ops; a decision
        # larger than the limit goes alone.
        assert writes == [[1, 11], [21, 0, 41], [51]]
        assert published == [0, 1, 2, 3, 4, 5]
        assert len(queue) == 0

    asyncio.run(body())


def test_a_failed_write_fails_every_queued_decision_and_reports_once() -> None:
    async def body() -> None:
        failures: list[BaseException] = []

        async def persist(batch: Sequence[Decision]) -> None:
            raise OSError(5, "Input/output error")

        queue = CommitQueue(persist, failures.append)
        published: list[int] = []
        futures = [queue.add(Decision(_draft(1, first=n), False, lambda n=n: published.append(n))) for n in (1, 2)]
        for future in futures:
            with pytest.raises(OSError, match="Input/output"):
                await future
        assert len(failures) == 1 and published == [] and len(queue) == 0

    asyncio.run(body())

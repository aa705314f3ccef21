"""The manager's decisions made durable in order, many per write (group commit).

A decision (draft.py) is taken in memory at once, so the next heartbeat is judged on
top of it; what it changes becomes visible outside (GetRouting, a reply's routing
version, a renewed lease) only once it is durable. Before, each decision held the
manager's lock across its own durable write: at a thousand nodes the heartbeats that
changed something queued behind one fsync each, and nodes went unheard past their
timeout (issue 23). Here a single writer takes every decision queued so far (up to
`max_ops` records, so an etcd Txn stays within --max-txn-ops), writes them in one
transaction in decision order, then runs each one's `durable` step in that order.

A failed write fails every queued decision: the memory is then ahead of the store, and
`on_failure` must bring it back (the manager reloads its state from the store).
Decisions that write nothing (stats) still wait their turn, so their visible effects
never overtake an earlier decision that is not durable yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .draft import Draft

__all__ = ["CommitQueue", "Decision", "ops_of"]

log = logging.getLogger("emberfs.metaserver.mgmt")

MAX_OPS = 512  # records per write: within etcd's --max-txn-ops as the project launches it (1024)


def ops_of(draft: Draft) -> int:
    """The records a draft writes (table.save_draft), plus the version keys."""
    if not draft.persistent:
        return 0
    admin = len(draft.admin() ^ draft.base.admin_offline) if draft.admin_offline is not None else 0
    return len(draft.nodes) + len(draft.targets) + len(draft.chains) + len(draft.removed_chains) + admin + 2


@dataclass(eq=False)
class Decision:
    draft: Draft
    chain_set_moved: bool  # judged before publish folded the draft into the state's mappings
    durable: Callable[[], None]  # what becomes visible once it is written
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def ops(self) -> int:
        return ops_of(self.draft)


Persist = Callable[[Sequence[Decision]], Awaitable[None]]


class CommitQueue:
    def __init__(self, persist: Persist, on_failure: Callable[[BaseException], None], max_ops: int = MAX_OPS) -> None:
        self._persist = persist
        self._on_failure = on_failure
        self._max_ops = max_ops
        self._queue: deque[Decision] = deque()
        self._writer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, decision: Decision) -> asyncio.Future[None]:
        """Queue a decision taken in memory; the future is done once it is durable."""
        self._queue.append(decision)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._run(), name="mgmt-commit")
        return decision.done

    async def drain(self) -> None:
        """Wait for the writer to finish what is queued (stopping)."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(writer)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every queued decision (the manager gave up managing)."""
        queued, self._queue = list(self._queue), deque()
        for decision in queued:
            if not decision.done.done():
                decision.done.set_exception(exc)
                decision.done.exception()  # a decision nobody awaits (a tick's) must not log it as lost

    async def _run(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                if any(d.draft.persistent for d in batch):
                    await self._persist(batch)
            except asyncio.CancelledError as exc:  # the loop is closing
                self.fail_all(exc)
                raise
            except Exception as exc:
                self.fail_all(exc)
                self._on_failure(exc)
                return
            for decision in batch:
                self._queue.popleft()
                try:
                    decision.durable()
                except Exception:  # a bug there must not leave later decisions waiting forever
                    log.exception("publishing a durable decision failed")
                if not decision.done.done():
                    decision.done.set_result(None)

    def _take(self) -> list[Decision]:
        """The decisions at the front (left queued until written), up to max_ops
        records; always at least one."""
        batch: list[Decision] = []
        ops = 0
        for decision in self._queue:
            if batch and ops + decision.ops > self._max_ops:
                break
            batch.append(decision)
            ops += decision.ops
        return batch

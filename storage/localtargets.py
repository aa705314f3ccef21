"""`LocalTargets`: this node's targets as the request handlers reach them.

It holds what every handler of a chunk request shares, whatever the request does:
- the store of each target, refused once a disk error failed it (`store_of`);
- the I/O thread pool the store calls run in; a disk error there fails the target,
  which the agent then reports LOCAL_OFFLINE (`tio`, `failing_target`);
- the chain a request names, routing refreshed when the request knows a newer
  version and an older one refused (`chain`), and which local target it means
  (`named`, `in_chain`);
- the per-chunk locks that serialise the updates of one chunk;
- the tasks whose caller may be cancelled but whose store work must end first
  (`finish`), waited for or cancelled at shutdown.

craq.Operator (the replication driver), housekeeping.Housekeeping, syncrecv.SyncReceiver
and resync.ResyncWorker all work through one LocalTargets, so none of them reaches into
another's internals; this module imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from emberfs.common.chainstate import Chain
from emberfs.common.errors import FailedPrecondition, NotFound, StaleChainVersion, Unavailable

from .checks import ChunkLocks, VersionCheck, check_chain_version, local_target
from .chunkstore import ChunkStore
from .localstate import NodeHealth
from .oserrors import DiskFailure
from .routingsource import RoutingSource

__all__ = ["LocalTargets"]

log = logging.getLogger("emberfs.storage.targets")

T = TypeVar("T")


class LocalTargets:
    def __init__(
        self,
        node_id: int,
        stores: dict[int, ChunkStore],
        routing: RoutingSource,
        executor: ThreadPoolExecutor,
        *,
        health: NodeHealth | None = None,
    ) -> None:
        self.node_id = node_id
        self.stores = stores
        self.ids = frozenset(stores)
        self.routing = routing
        self.executor = executor
        self.health = health or NodeHealth()
        self.locks = ChunkLocks()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- work that outlives its caller ----------------------------------------------

    async def finish(self, coro: Any) -> Any:
        """Run `coro` to its end even if our caller is cancelled: a handler cancelled at
        its deadline must not release a chunk lock while the store work it started
        still runs (issue 15, defect 2). The caller gets the result, or its own
        CancelledError while the work goes on."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that gave up leaves no "never retrieved" noise

    async def drain(self) -> None:
        """Wait for updates whose callers gave up (server shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        """Cancel what is left at shutdown: a store call already in a thread still ends
        (the executor's shutdown waits for it); an update stays pending, as after a crash."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- stores and their I/O ------------------------------------------------------

    async def run_io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in the I/O pool, whatever state its target is in (statistics)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def store_of(self, target: int) -> ChunkStore:
        """The store of a local target that has not failed."""
        why = self.health.failed.get(target)
        if why is not None:
            raise Unavailable(f"target {target} failed ({why}); the manager takes it out of its chain")
        return self.stores[target]

    async def tio(self, target: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call of `target` in the I/O pool; a disk error fails the target."""
        self.store_of(target)
        with self.failing_target(target):
            return await self.run_io(fn, *args, **kwargs)

    @contextlib.contextmanager
    def failing_target(self, target: int) -> Iterator[None]:
        """A disk error inside fails `target` (it reports LOCAL_OFFLINE from now on)."""
        try:
            yield
        except DiskFailure as exc:
            if self.health.fail(target, exc.message):
                log.error("target %d failed: %s; reporting it offline", target, exc.message)
            raise DiskFailure(f"target {target}: {exc.message}; nothing was committed") from None

    # -- chains and which target a request means ---------------------------------------

    async def chain(self, chain_id: int, version: int, *, strict: bool = True) -> Chain:
        """The chain as this server sees it; a request naming a newer version (or an
        unknown chain) refreshes routing first; an older version is refused."""
        view = self.routing.view
        chain = view.chains.get(chain_id)
        if chain is None or (strict and version > chain.chain_version):
            view = await self.routing.refresh()
            chain = view.chains.get(chain_id)
        if chain is None:
            raise NotFound(f"unknown chain {chain_id} (routing version {view.version})")
        if strict and check_chain_version(chain, version) == VersionCheck.NEWER:
            raise StaleChainVersion(
                f"chain {chain_id}: the request names version {version} but this server still "
                f"holds {chain.chain_version} after a routing refresh; retry shortly"
            )
        return chain

    def in_chain(self, chain: Chain) -> int:
        """This node's target in `chain`."""
        return local_target(chain, self.ids, self.node_id)

    def named(self, chain: Chain, target_id: int) -> int:
        """The target a request names (0: this node's target in the chain), checked to
        be on this node and in the chain."""
        if target_id == 0:
            return self.in_chain(chain)
        if target_id not in self.ids:
            raise NotFound(f"target {target_id} is not on node {self.node_id}")
        if chain.state_of(target_id) is None:
            raise FailedPrecondition(f"target {target_id} is not in chain {chain.chain_id}")
        return target_id

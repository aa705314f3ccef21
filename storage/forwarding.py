"""Sending a Forward to a successor, with the failure rules of issue 5. Used by
craq.Operator (the head's write path, replicas passing an update on, and the resync
worker all forward through `send_forward`).

- A successor that cannot be reached fails the forward Unavailable (retryable) and
  refreshes routing in the background: the manager may be building a chain without
  it, and the client's retry should find that chain.
- A successor that leaves the chain while the call is in flight (routing shows
  another target after us: the peer was frozen or died mid-call) fails it at once
  with StaleChainVersion naming the new version (retryable; the caller refreshes
  routing), instead of holding the chunk lock for the whole forward timeout.
Either way the update stays pending here and the next write re-drives it
(replication.head_plan), so nothing acknowledged is lost and nothing is half-applied.
"""

from __future__ import annotations

import asyncio
from typing import Any

from emberfs.common.chainstate import Chain
from emberfs.common.errors import EmberError, NotFound, StaleChainVersion, Unavailable
from emberfs.common.routing import RoutingView
from emberfs.common.storagepool import StoragePool
from emberfs.proto import storage_pb2

from .routingsource import RoutingSource

__all__ = ["FORWARD_TIMEOUT_S", "Forwarder"]

FORWARD_TIMEOUT_S = 30.0


class Forwarder:
    def __init__(self, routing: RoutingSource, peers: StoragePool) -> None:
        self.routing = routing
        self.peers = peers
        self._refreshing: asyncio.Task[RoutingView] | None = None

    def refresh_soon(self) -> None:
        """Refresh routing in the background (a failed peer may mean a new chain)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self.routing.refresh())

    async def send_forward(self, chain: Chain, request: storage_pb2.ForwardRequest) -> storage_pb2.WriteResponse:
        """Forward to `request.to_target` and await its ack (the module docstring
        says how it fails)."""
        successor = request.to_target
        try:
            view = self.routing.view
            address, bulk = view.address_of(successor), view.bulk_address_of(successor)
        except (NotFound, KeyError):
            raise Unavailable(f"successor target {successor} of chain {chain.chain_id} has no known address") from None
        call = asyncio.ensure_future(
            self.peers.call(address, "Forward", request, timeout=FORWARD_TIMEOUT_S, bulk_address=bulk))
        call.add_done_callback(_seen)  # a call that failed as our caller was cancelled is not logged
        watch = asyncio.ensure_future(self._successor_left(chain, request.from_target, successor))
        try:
            await asyncio.wait((call, watch), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # our caller was cancelled: so is the call
            call.cancel()
            raise
        finally:
            watch.cancel()
        if not call.done():
            call.cancel()
            moved = watch.result() if watch.done() and not watch.cancelled() else None
            version = moved.chain_version if moved is not None else "?"
            raise StaleChainVersion(
                f"chain {chain.chain_id} moved to version {version} while a forward to target {successor} "
                "was in flight, and that target is no longer next; the write stays pending and is re-driven "
                "on retry: refresh routing and retry")
        try:
            return call.result()
        except EmberError as error:
            if isinstance(error, Unavailable):
                self.refresh_soon()
                raise Unavailable(
                    f"successor target {successor} at {address} is unreachable ({error.message}); "
                    "the write stays pending and is re-driven on retry"
                ) from None
            raise type(error)(f"successor target {successor}: {error.message}") from None

    async def _successor_left(self, chain: Chain, target: int, successor: int) -> Chain | None:
        """Return (the new chain, None if it is gone) once routing shows `successor`
        no longer after `target` in the chain."""
        changed = getattr(self.routing, "changed", None)
        if changed is None:  # a static routing source (tests): it never moves
            await asyncio.Event().wait()
            return None
        version = self.routing.view.version
        while True:
            view = await changed(version)
            version = view.version
            now = view.chains.get(chain.chain_id)
            if now is None or now.successor(target) != successor:
                return now


def _seen(task: asyncio.Future[Any]) -> None:
    """Mark a task's failure as retrieved: its awaiter gave up (cancelled, or the chain
    moved) and the failure means nothing more than that."""
    if not task.cancelled():
        task.exception()

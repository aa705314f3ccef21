"""The manager-primary election on etcd: one lease-bound key, campaigned for by every
metaserver of a file system (docs/ARCHITECTURE.md, "Manager failover").

The key `root ‖ "manager/primary"` holds "HOST:PORT TOKEN" of the primary and is
attached to an etcd lease of `ttl_s` seconds:

- a standby reads the key every `poll_s`; while it is absent, it takes a lease and
  creates the key in one Txn guarded by "the key does not exist" (only one campaigner
  can win it), then calls `on_elected`;
- the primary renews the lease every ttl/4; each renewal extends its term (mgmt/primary.py:
  from the time the renewal was sent). When etcd says the lease is gone, when the key no
  longer names it, or when its term runs out without a renewal, it calls `on_deposed`
  and campaigns again like any standby;
- `resign()` (a clean stop) revokes the lease, so a standby takes over at its next poll
  instead of after the TTL.

etcd calls block, so they run on one thread of the election's own, apart from the
namespace store's pool: a busy store cannot starve the keep-alives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from emberfs.common.errors import EmberError, NotFound

from ..mgmt.primary import PRIMARY_KEY, PRIMARY_TABLE, Term, check_record, term_after
from ..txn import MetaTxn
from .client import EtcdClient
from .errors import OutcomeUnknown
from .model import Compare, CompareOp, CompareTarget, Op

__all__ = ["EtcdElection", "primary_key"]

log = logging.getLogger("emberfs.metaserver.election")

_P = ParamSpec("_P")
_T = TypeVar("_T")


def primary_key(root: bytes) -> bytes:
    """The primary record's etcd key: the `manager` table's `primary` key of the store
    (etcdkv/optimistic.py's key scheme), so a manager transaction can read it."""
    return root + PRIMARY_TABLE.encode("ascii") + b"/" + PRIMARY_KEY


class EtcdElection:
    """PrimaryGate (mgmt/primary.py) of one metaserver on etcd."""

    def __init__(
        self,
        client: EtcdClient,
        root: bytes,
        address: str,
        *,
        ttl_s: int,
        poll_s: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._key = primary_key(root)
        self.identity = f"{address} {os.urandom(8).hex()}".encode()
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self._monotonic = monotonic
        self._term: Term | None = None
        self._lease = 0  # the lease of the last win, revoked by resign()
        self._hint = "unknown (no primary elected yet)"
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="meta-election")

    # -- PrimaryGate ---------------------------------------------------------------------
    def holds(self, now: float) -> bool:
        term = self._term
        return term is not None and term.holds(now)

    def fence(self, tx: MetaTxn) -> None:
        check_record(tx, self.identity)

    @property
    def primary_hint(self) -> str:
        return self._hint

    # -- the campaign --------------------------------------------------------------------
    async def run(self, on_elected: Callable[[], Awaitable[None]], on_deposed: Callable[[], Awaitable[None]]) -> None:
        """Campaign, hold, step down, campaign again: until cancelled."""
        while True:
            try:
                won = await self._call(self._campaign)
            except EmberError as exc:
                log.warning("manager election: etcd did not answer: %s", exc.message)
                won = False
            if not won:
                await asyncio.sleep(self.poll_s)
                continue
            log.info("this metaserver is now the cluster manager primary (lease %#x, %d s)",
                     self._term.lease_id if self._term else 0, self.ttl_s)
            try:
                await on_elected()
                await self._hold()
            except Exception:  # e.g. the state could not be loaded: give the role to another
                log.exception("cluster manager primary failed; stepping down")
            finally:
                self._term = None
                await asyncio.shield(on_deposed())
            await self.resign()  # the lease may still run: a standby need not wait it out

    async def resign(self) -> None:
        """Give the role up now (a clean stop): the next standby need not wait the TTL."""
        self._term = None
        lease, self._lease = self._lease, 0
        if lease:
            try:
                await self._call(self._client.lease_revoke, lease)
                log.info("released the cluster manager primary lease")
            except NotFound:
                pass  # expired already
            except EmberError as exc:
                log.warning("could not revoke the primary lease (it expires in %d s): %s", self.ttl_s, exc.message)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _hold(self) -> None:
        """Renew the lease until the term is lost."""
        while True:
            term = self._term
            if term is None:
                return
            await asyncio.sleep(self.ttl_s / 4)
            sent_at = self._monotonic()
            try:
                ttl = await self._call(self._client.lease_keepalive_once, term.lease_id)
                current = await self._call(self._client.get, self._key)
            except NotFound:
                log.warning("deposed: the primary lease expired in etcd")
                return
            except EmberError as exc:
                if term.holds(self._monotonic()):
                    continue  # etcd away for a moment: the term still covers us
                log.warning("deposed: no lease renewal for the whole term (%s)", exc.message)
                return
            if current is None or current.value != self.identity:
                self._hint = _address_of(current.value) if current is not None else "unknown"
                log.warning("deposed: the primary record names another metaserver (%s)", self._hint)
                return
            self._term = term_after(term.lease_id, sent_at, ttl)

    def _campaign(self) -> bool:
        """One try (blocking): True when this process became the primary."""
        current = self._client.get(self._key)
        if current is not None:
            self._hint = _address_of(current.value)
            return False
        sent_at = self._monotonic()
        lease = self._client.lease_grant(self.ttl_s)
        create = [Compare(self._key, CompareTarget.VERSION, CompareOp.EQUAL, 0)]
        try:
            won = self._client.txn(create, [Op.put(self._key, self.identity, lease=lease)]).succeeded
        except OutcomeUnknown:
            found = self._client.get(self._key)
            won = found is not None and found.value == self.identity
        if not won:
            with contextlib.suppress(EmberError):  # never renewed, it expires by itself anyway
                self._client.lease_revoke(lease)
            return False
        self._term = term_after(lease, sent_at, self.ttl_s)
        self._lease = lease
        self._hint = _address_of(self.identity)
        return True

    async def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))


def _address_of(identity: bytes) -> str:
    return identity.decode(errors="replace").split(" ", 1)[0]

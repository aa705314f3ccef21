"""The disk of one simulated target: the store calls of chunkstore.py, each atomic
like its LMDB transaction, with the version rules taken from the rule set."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from emberfs.storage import replication as rep

from .model import Node, Result, Stored
from .rules import Rules, apply_update

HISTORY_LIMIT = 16


def disk_op(rules: Rules, node: Node, op: tuple[Any, ...]) -> Result:
    """One store call on `node`'s disk; the result goes back to the handler."""
    what, chunk = op[0], op[1]
    if what == "prepare":
        _, _, u, update, sync = op
        if rules.gc_locks and chunk[0] in node.gone:
            return ("err", "gone: the file was collected here")
        stored = node.stored(chunk)
        r = stored.replica
        if not rules.may_prepare(r, u, sync):
            return ("err", f"pending v{u} is not above committed v{r.commit_version}")
        digest = apply_update(r.committed, update)
        node.put(chunk, replace(stored, replica=replace(r, pending_version=u, pending=digest),
                                pending_key=update.key))
        return ("ok", digest)
    if what == "commit":
        u = op[2]
        stored = node.stored(chunk)
        after = rules.committed(stored.replica, u)
        if after is None:
            return ("err", f"no pending version {u}")
        history = stored.history
        if stored.replica.pending_version == u and stored.pending_key and rules.remembers_requests:
            history = rep.remembered(history, stored.pending_key, u, HISTORY_LIMIT)
        node.put(chunk, Stored(after, history))
        if not after.has_record:
            return ("ok", (u, after.committed))  # legacy: the REMOVE dropped the record
        return ("ok", (after.commit_version, after.committed))
    if what == "sync_start":
        stored = node.stored(chunk)
        node.put(chunk, replace(stored, replica=rep.sync_start(stored.replica), pending_key=b""))
        return ("ok", None)
    if what in ("purge", "gc_remove"):
        node.disk.pop(chunk, None)
        return ("ok", None)
    if what == "mark_gone":
        node.gone.add(chunk)
        return ("ok", None)
    if what == "gc_remove_file":
        for c in [c for c in node.disk if c[0] == chunk]:
            del node.disk[c]
        return ("ok", None)
    raise AssertionError(op)

"""The storage server's handlers, as generators that mirror storage/craq.py,
resync.py, syncrecv.py and housekeeping.py step by step, with every version
decision delegated to the rule set (rules.py).

A handler yields what it waits for and gets the outcome sent back:

    ("admit", chain_version)   count this update as admitted under that chain version
    ("lock", chunk)            the chunk lock (FIFO); ("unlock", chunk) gives it back
    ("io", op)                 a store call (world.disk_op); the result comes back
    ("call", node, request)    an RPC; ("ok", value) or ("err", why) comes back
    ("drain", chain_version)   wait until no update admitted under an older version runs here

and returns ("ok", value) or ("err", why), which the world sends to its callers.
Locks still held when a handler ends are released by the world.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from emberfs.common.chainstate import Chain, PublicState

from .model import ChunkId, Result, Task
from .rules import ABSENT, REMOVE, WRITE, Digest, Update, whole

if TYPE_CHECKING:
    from .world import World

Handler = Generator[Any, Any, Result]


def _err(why: str) -> Result:
    return ("err", why)


def _chain(world: World, nid: int, version: int) -> tuple[Chain | None, str]:
    """localtargets.LocalTargets.chain: a newer version refreshes routing; an older one is refused."""
    node = world.nodes[nid]
    if node.view is None or version > node.view.chain_version:
        world.refresh(nid)
    view = node.view
    if view is None:
        return None, "no routing yet"
    if version != view.chain_version:
        return None, f"stale chain version {version} (target {nid} holds {view.chain_version})"
    return view, ""


def _forward_on(world: World, nid: int, chain: Chain, chunk: ChunkId, update: Update, u: int,
                sent: Digest) -> Generator[Any, Any, Result | None]:
    """craq._forward_on: send to the successor, compare its ack (None: success)."""
    successor = chain.successor(nid)
    if successor is None:
        return None
    if chain.state_of(successor) == PublicState.SYNCING and update.kind == WRITE:
        update = whole(sent, update.key)  # a SYNCING target takes whole chunks only
    reply = yield ("call", successor, ("forward", chunk, update, u, chain.chain_version, nid, successor))
    if reply[0] != "ok":
        return reply
    version, acked = reply[1]
    if not world.rules.check_ack(u, sent, version, acked):
        return _err(f"diverged: target {successor} acked v{version} {acked}, sent v{u} {sent}")
    return None


def head_write(world: World, nid: int, task: Task, chunk: ChunkId, update: Update, version: int) -> Handler:
    """craq._head_update (client write at the head)."""
    rules = world.rules
    chain, why = _chain(world, nid, version)
    if chain is None:
        return _err(why)
    if chain.head != nid:
        return _err(f"target {nid} is not the head")
    yield ("admit", chain.chain_version)
    yield ("lock", chunk)
    node = world.nodes[nid]
    stored = node.stored(chunk)
    plan = rules.head_plan(stored.replica, update.kind == REMOVE)
    if plan.noop:
        return ("ok", (stored.replica.commit_version, stored.replica.committed))
    if plan.redrive_pending is not None:
        p = plan.redrive_pending
        pending = stored.replica.pending
        assert pending is not None
        failed = yield from _forward_on(world, nid, chain, chunk, whole(pending, stored.pending_key), p, pending)
        if failed:
            return failed
        done = yield ("io", ("commit", chunk, p))
        if done[0] != "ok":
            return done
        if rules.replan_after_redrive:
            stored = node.stored(chunk)
            plan = rules.head_plan(stored.replica, update.kind == REMOVE)
    if rules.remembers_requests and update.key and any(k == update.key for k, _ in stored.history):
        return ("ok", (stored.replica.commit_version, stored.replica.committed))  # a retry that committed
    u = plan.update_version
    prepared = yield ("io", ("prepare", chunk, u, update, False))
    if prepared[0] != "ok":
        return prepared
    failed = yield from _forward_on(world, nid, chain, chunk, update, u, prepared[1])
    if failed:
        return failed  # the pending version stays; the next write re-drives it
    return (yield ("io", ("commit", chunk, u)))


def forward(world: World, nid: int, task: Task, chunk: ChunkId, update: Update, u: int, version: int,
            sender: int, to: int) -> Handler:
    """craq._apply_forward (an update from the predecessor)."""
    rules = world.rules
    chain, why = _chain(world, nid, version)
    if chain is None:
        return _err(why)
    if to != nid or nid not in chain.write_path or chain.successor(sender) != nid:
        return _err(f"target {nid} is not the successor of {sender} in chain v{chain.chain_version}")
    syncing = chain.state_of(nid) == PublicState.SYNCING
    if syncing and update.kind == WRITE:
        return _err("a SYNCING target takes whole chunks only")
    if u == 0 and not syncing:
        return _err("a purge goes only to a SYNCING target")
    yield ("admit", chain.chain_version)
    yield ("lock", chunk)
    node = world.nodes[nid]
    r = node.replica(chunk)
    action = rules.decide_update(r, u, remove=update.kind == REMOVE, sync=syncing, gone=chunk[0] in node.gone)
    if action == "already_committed":
        return ("ok", (r.commit_version, r.committed))  # the sender compares (current rules)
    if action != "apply":
        return _err(f"{action}: target {nid} holds v{r.commit_version} pending {r.pending_version}, update v{u}")
    if u == 0:
        yield ("io", ("purge", chunk))
        return ("ok", (0, ABSENT))
    prepared = yield ("io", ("prepare", chunk, u, update, syncing))
    if prepared[0] != "ok":
        return prepared
    failed = yield from _forward_on(world, nid, chain, chunk, update, u, prepared[1])
    if failed:
        return failed
    return (yield ("io", ("commit", chunk, u)))


def _take_over(world: World, nid: int, chain: Chain, chunk: ChunkId) -> Handler:
    """craq.take_over: the tail commits a pending version no running update owns."""
    yield ("lock", chunk)
    stored = world.nodes[nid].stored(chunk)
    r = stored.replica
    if r.pending_version is not None:
        if chain.successor(nid) is not None:
            world.note(f"tail {nid} takes over {chunk} v{r.pending_version} with SYNCING successor "
                       f"{chain.successor(nid)} (chain v{chain.chain_version})")
            if world.rules.takeover_forwards:  # b4b33c6: the SYNCING successor gets it first
                assert r.pending is not None
                failed = yield from _forward_on(world, nid, chain, chunk, whole(r.pending, stored.pending_key),
                                                r.pending_version, r.pending)
                if failed:
                    return failed
        yield ("io", ("commit", chunk, r.pending_version))
    yield ("unlock", chunk)
    return ("ok", None)


def read(world: World, nid: int, task: Task, chunk: ChunkId, version: int) -> Handler:
    """craq.read_data: CRAQ's clean/dirty read, with the tail's take-over."""
    rules = world.rules
    chain, why = _chain(world, nid, version)
    if chain is None:
        return _err(why)
    if chain.state_of(nid) != PublicState.SERVING:
        return _err(f"target {nid} is not SERVING")
    node = world.nodes[nid]
    for _ in range(3):
        r = node.replica(chunk)
        how = rules.read_plan(r, chain.tail == nid)
        if how == "serve_committed":
            return ("ok", (r.commit_version, r.committed))
        if how == "take_over":
            taken = yield from _take_over(world, nid, chain, chunk)
            if taken[0] != "ok":
                return taken
            continue
        tail = chain.tail
        assert tail is not None
        answer = yield ("call", tail, ("commit_version", chunk, chain.chain_version))
        if answer[0] != "ok":
            return answer
        how = rules.resolve_dirty_read(r, answer[1])
        if how == "serve_committed":
            return ("ok", (r.commit_version, r.committed))  # the bytes read before asking
        if how == "serve_pending":
            now = node.replica(chunk)
            if now.commit_version == r.pending_version:
                return ("ok", (now.commit_version, now.committed))
            if now.pending_version == r.pending_version and now.pending is not None:
                return ("ok", (now.pending_version, now.pending))
    return _err("the chunk kept changing")


def commit_version(world: World, nid: int, task: Task, chunk: ChunkId, version: int) -> Handler:
    """craq.get_commit_version (a dirty read's question to the tail)."""
    chain, why = _chain(world, nid, version)
    if chain is None:
        return _err(why)
    r = world.nodes[nid].replica(chunk)
    if chain.tail == nid and world.rules.read_plan(r, True) == "take_over":
        taken = yield from _take_over(world, nid, chain, chunk)
        if taken[0] != "ok":
            return taken
        r = world.nodes[nid].replica(chunk)
    return ("ok", r.commit_version)


def _syncing(world: World, nid: int, version: int) -> tuple[Chain | None, str]:
    chain, why = _chain(world, nid, version)
    if chain is not None and chain.state_of(nid) != PublicState.SYNCING:
        return None, f"target {nid} is not SYNCING in chain v{chain.chain_version}"
    return chain, why


def sync_dump(world: World, nid: int, task: Task, version: int) -> Handler:
    """syncrecv.sync_dump: drop pending versions (current), list committed chunks."""
    chain, why = _syncing(world, nid, version)
    if chain is None:
        return _err(why)
    node = world.nodes[nid]
    if world.rules.sync_drops_pending:
        for chunk in sorted(c for c, s in node.disk.items() if s.replica.pending_version is not None):
            yield ("lock", chunk)
            yield ("io", ("sync_start", chunk))
            yield ("unlock", chunk)
    listed = {c: (s.replica.commit_version, s.replica.committed)
              for c, s in node.disk.items() if world.rules.listed(s.replica)}
    return ("ok", listed)


def sync_done(world: World, nid: int, task: Task, version: int) -> Handler:
    chain, why = _syncing(world, nid, version)
    if chain is None:
        return _err(why)
    world.nodes[nid].synced_at = chain.chain_version
    return ("ok", None)
    yield  # a generator like the others


def remove_chunks(world: World, nid: int, task: Task, file: int) -> Handler:
    """housekeeping.remove_chunks (GC of a deleted file on this target)."""
    if not world.rules.gc_locks:
        yield ("io", ("gc_remove_file", file))  # legacy: store.remove_inode, no lock, no mark
        return ("ok", None)
    yield ("io", ("mark_gone", file))
    node = world.nodes[nid]
    for chunk in sorted(c for c in node.disk if c[0] == file):
        yield ("lock", chunk)
        yield ("io", ("gc_remove", chunk))
        yield ("unlock", chunk)
    return ("ok", None)


def resync(world: World, nid: int, task: Task, dest: int, version: int) -> Handler:
    """resync.ResyncWorker.sync_once, run by the SERVING predecessor of `dest`."""
    rules = world.rules
    node = world.nodes[nid]
    yield ("drain", version)
    if rules.resync_takes_over and node.view is not None and node.view.chain_version == version:
        # craq.take_over_all: as the tail, commit (and send on) what no update owns
        # first; a former tail may have served it.
        for chunk in sorted(c for c, s in node.disk.items() if s.replica.pending_version is not None):
            taken = yield from _take_over(world, nid, node.view, chunk)
            if taken[0] != "ok":
                return taken
    dump = yield ("call", dest, ("sync_dump", version))
    if dump[0] != "ok":
        return dump
    theirs = dump[1]
    mine = {c: (s.replica.commit_version, s.replica.committed)
            for c, s in node.disk.items() if rules.listed(s.replica)}
    for chunk in sorted(set(mine) | set(theirs)):
        if mine.get(chunk) == theirs.get(chunk):
            continue
        if task.stopping:
            return _err("the chain moved: resync stopped")
        yield ("lock", chunk)
        r = node.replica(chunk)
        u = rules.sync_version(r)
        reply = yield ("call", dest, ("forward", chunk, whole(r.committed), u, version, nid, dest))
        yield ("unlock", chunk)
        if reply[0] != "ok":
            if rules.gc_locks and reply[1].startswith("gone"):
                continue  # collected on the successor meanwhile: GC removes ours too
            return reply
        acked_version, acked = reply[1]
        if rules.compare_acks:
            if not rules.check_ack(u, r.committed, acked_version, acked):
                return _err(f"resync of {chunk}: ack v{acked_version} {acked}, sent v{u} {r.committed}")
        elif r.committed.exists and acked != r.committed:
            return _err(f"resync of {chunk}: length/CRC32C differ")
    return (yield ("call", dest, ("sync_done", version)))


HANDLERS: dict[str, Callable[..., Handler]] = {
    "write": head_write,
    "forward": forward,
    "read": read,
    "commit_version": commit_version,
    "sync_dump": sync_dump,
    "sync_done": sync_done,
    "remove_chunks": remove_chunks,
}

"""The simulated cluster and its scheduler: nodes running handlers (handlers.py),
a network of messages any of which may be delivered next (reordering) or lost, a
disk per node, the cluster manager (common/chainstate.next_chain), clients and the
GC collector. No threads, no clocks, no I/O: everything that may happen next is a
`Choice` in `enabled()`, and `step(choice)` applies one; whoever picks the choices
(a seeded random walk, a depth-first search, a replayed trace) owns the schedule.

Timing model: a lost message or a cancelled handler is the caller's deadline firing,
so the caller sees its error at once; a crash loses the node's memory, its queued
store calls and its locks (the disk keeps committed state and, whole or torn as the
crash choice says, pending versions), and its callers learn of it by an error reply
that travels like any message. A restart registers a new incarnation with the
manager (its first heartbeat) before the node answers anything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from emberfs.common.chainstate import Chain, LocalState, new_chain

from . import handlers
from .checks import Checker
from .disk import disk_op
from .manager import Manager
from .model import Choice, Client, Msg, Node, Result, Scope, Task, Violation
from .rules import REMOVE, Rules, Update


class World(Manager):
    """The whole simulated cluster; see the module docstring."""

    def __init__(self, rules: Rules, scope: Scope) -> None:
        self.rules = rules
        self.scope = scope
        ids = range(1, scope.nodes + 1)
        self.chain: Chain = new_chain(1, ids)
        self.nodes = {i: Node(i, view=self.chain) for i in ids}
        self.local: dict[int, LocalState] = {i: LocalState.UPTODATE for i in ids}
        self.incarnations = {i: 0 for i in ids}
        self.net: dict[Any, Msg] = {}
        self.calls: dict[Any, tuple[Any, ...]] = {}
        self.clients: dict[Any, Client] = {
            i: Client(i, script, retries=scope.max_retries) for i, script in enumerate(scope.scripts, 1)
        }
        self.deleted: set[int] = set()
        self.gc_answered: dict[int, set[int]] = {}
        self.gc_attempts: dict[tuple[int, int], int] = {}
        self.used = {"crash": 0, "drop": 0, "cancel": 0}
        self.healing = False
        self.checker = Checker(self)
        self.ready: list[tuple[int, Any, Any]] = []
        self.steps = 0
        self.notes: list[tuple[int, str]] = []
        """Notable moments, for the failure report: (step, what)."""

    def note(self, what: str) -> None:
        self.notes.append((self.steps, what))

    # -- the scheduler's interface --------------------------------------------

    def enabled(self) -> list[Choice]:
        """Everything that may happen next, in a deterministic order."""
        out: list[Choice] = [("deliver", mid) for mid in self.net]
        for node in self.nodes.values():
            out += [("io", node.nid, io_id) for io_id, _, _ in node.io_queue]
        faults = not self.healing
        if faults and self.used["drop"] < self.scope.drops:
            out += [("drop", mid) for mid, m in self.net.items() if m.body[0] in ("request", "reply")]
        if faults and self.used["cancel"] < self.scope.cancels:
            for node in self.nodes.values():
                out += [("cancel", node.nid, t.tid) for t in node.tasks.values()
                        if t.kind in ("write", "forward") and t.callers and not t.reply_lost]
        for node in self.nodes.values():
            n = node.nid
            if not node.alive:
                noticed = self.local[n] == LocalState.OFFLINE
                if self.healing or (self.scope.restarts and (self.scope.quick_restarts or noticed)):
                    out.append(("restart", n))
                if self.local[n] != LocalState.OFFLINE and (self.scope.timeouts or self.healing):
                    out.append(("timeout", n))
                continue
            if faults and self.used["crash"] < self.scope.crashes:
                torn = any(s.replica.pending_version is not None for s in node.disk.values())
                out += [("crash", n, True), ("crash", n, False)] if torn else [("crash", n, True)]
            if self._heartbeat_due(node):
                out.append(("heartbeat", n))
            if node.job is not None and node.job_task is None and not node.job_done:
                out.append(("resync", n))
        for client in self.clients.values():
            if client.busy or client.done:
                continue
            op, chunk = client.script[client.pc]
            if client.attempt == 0 and not client.healer and (self.healing or chunk[0] in self.deleted):
                out.append(("client", client.cid, "skip"))
            elif op == "read" and self.scope.reads_everywhere:
                out += [("client", client.cid, t) for t in self.chain.serving] or [("client", client.cid, 0)]
            else:
                out.append(("client", client.cid, 0))
        for file in self.scope.gc_files:
            idle = not self.scope.gc_when_idle or all(c.done for c in self.clients.values())
            if file not in self.deleted and faults and idle:
                out.append(("gc", file))
            for target in self.nodes:
                if file in self.deleted and target not in self.gc_answered[file] \
                        and ("gc", file, target, self.gc_attempts[(file, target)]) not in self.calls:
                    out.append(("gc_retry", file, target))
        return out

    def step(self, choice: Choice) -> None:
        """Apply one choice, run every handler it woke, then check the invariants."""
        self.steps += 1
        kind = choice[0]
        getattr(self, "_on_" + kind)(*choice[1:])
        self._run_ready()
        self.checker.check_state()

    # -- events ---------------------------------------------------------------

    def _on_deliver(self, mid: Any) -> None:
        msg = self.net.pop(mid)
        if msg.body[0] == "routing":
            if self.nodes[msg.dst[1]].incarnation == msg.dst[2]:
                self._learn(msg.dst[1], msg.body[1])
        elif msg.body[0] == "request":
            self._deliver_request(msg)
        else:
            self._complete(msg.body[1], msg.body[2])

    def _on_drop(self, mid: Any) -> None:
        self.used["drop"] += 1
        msg = self.net.pop(mid)
        call_id = msg.body[1]
        self._complete(call_id, ("err", "timeout: message lost"))

    def _on_io(self, nid: int, io_id: Any) -> None:
        node = self.nodes[nid]
        index = next(i for i, (x, _, _) in enumerate(node.io_queue) if x == io_id)
        _, tid, op = node.io_queue.pop(index)
        result = disk_op(self.rules, node, op)
        task = node.tasks.get(tid)
        if task is not None and task.blocked == ("io", io_id):
            self.ready.append((nid, tid, result))

    def _on_cancel(self, nid: int, tid: Any) -> None:
        self.used["cancel"] += 1
        self._cancel(nid, tid)

    def _cancel(self, nid: int, tid: Any) -> None:
        """The callers' deadline fires. Current rules: the handler's locked work runs on
        (storage/localtargets.py, LocalTargets.finish), only its reply is lost. Legacy: the
        handler is cancelled, its locks released at once; a store call it started still
        lands later."""
        node = self.nodes[nid]
        task = node.tasks[tid]
        callers, task.callers = task.callers, []
        if self.rules.cancel_keeps_lock:
            task.reply_lost = True
        else:
            self._kill(node, task)
            if task.blocked and task.blocked[0] == "call":  # gRPC propagates the cancellation
                callee = self.calls.pop(task.blocked[1], None)
                dst_tid = task.blocked[1]
                dst = task.blocked[2]
                if callee is not None and dst_tid in self.nodes[dst].tasks:
                    self._cancel(dst, dst_tid)
        for call_id in callers:
            self._complete(call_id, ("err", "deadline exceeded"))

    def _on_crash(self, nid: int, whole: bool) -> None:
        self.used["crash"] += 1
        node = self.nodes[nid]
        for task in list(node.tasks.values()):
            for call_id in task.callers:  # the connection breaks: the caller hears of it
                self._send(("reset", call_id), self.calls.get(call_id, ("none",)), ("reply", call_id,
                                                                                   ("err", "connection reset")))
            self._kill(node, task)
        for call_id in [c for c, w in self.calls.items() if w[:2] == ("task", nid)]:
            del self.calls[call_id]  # nobody is left to hear these answers
        for chunk, stored in list(node.disk.items()):
            after = self.rules.recovered(stored.replica, whole)
            node.put(chunk, replace(stored, replica=after, pending_key=stored.pending_key if after.pending else b""))
        fresh = Node(nid, disk=node.disk, gone=node.gone, alive=False, registered=False,
                     incarnation=node.incarnation)
        self.nodes[nid] = fresh

    def _on_restart(self, nid: int) -> None:
        node = self.nodes[nid]
        node.alive = True
        node.incarnation += 1

    def _on_client(self, cid: Any, target: int | str) -> None:
        client = self.clients[cid]
        op, chunk = client.script[client.pc]
        if target == "skip":
            client.pc += 1
            return
        if client.attempt == 0:
            client.epoch = self.checker.epoch(chunk)
            client.read_floor = self.checker.read_floor(chunk)
        call_id = ("c", cid, client.pc, client.attempt)
        client.attempt += 1
        if op == "read":
            dst = target if isinstance(target, int) and target else self.chain.tail
            body: tuple[Any, ...] = ("read", chunk, self.chain.chain_version)
        else:
            dst = self.chain.head
            key = f"c{cid}.{client.pc}".encode()
            update = Update(REMOVE, None, key) if op == "remove" else Update("write", f"c{cid}.{client.pc}", key)
            body = ("write", chunk, update, self.chain.chain_version)
        client.call = call_id
        if dst is None:
            self.calls[call_id] = ("client", cid)
            self._complete(call_id, ("err", "no serving target"))
            return
        self._call(call_id, ("client", cid), dst, body)

    def _on_gc(self, file: int) -> None:
        self.deleted.add(file)
        self.gc_answered[file] = set()
        for target in self.nodes:
            self.gc_attempts[(file, target)] = 0
            self._on_gc_retry(file, target)

    def _on_gc_retry(self, file: int, target: int) -> None:
        attempt = self.gc_attempts[(file, target)] + 1
        self.gc_attempts[(file, target)] = attempt
        call_id = ("gc", file, target, attempt)
        self._call(call_id, ("gc", file, target), target, ("remove_chunks", file))

    # -- messages and calls ---------------------------------------------------

    def _send(self, mid: Any, dst: tuple[Any, ...], body: tuple[Any, ...]) -> None:
        if mid not in self.net:
            self.net[mid] = Msg(mid, dst, body)

    def _call(self, call_id: Any, waiter: tuple[Any, ...], dst: int, body: tuple[Any, ...]) -> None:
        self.calls[call_id] = waiter
        node = self.nodes[dst]
        self._send(("req", call_id), ("node", dst, node.incarnation), ("request", call_id, body))

    def _deliver_request(self, msg: Msg) -> None:
        _, nid, incarnation = msg.dst
        _, call_id, body = msg.body
        node = self.nodes[nid]
        if not node.alive or node.incarnation != incarnation or not node.registered:
            self._send(("rep", call_id), self.calls.get(call_id, ("none",)),
                       ("reply", call_id, ("err", f"target {nid} unavailable")))
            return
        kind = body[0]
        if kind == "write":  # checks.RecentReplies: a retry joins or reuses the first attempt
            key = body[2].key
            if key in node.recent:
                self._send(("rep", call_id), self.calls.get(call_id, ("none",)), ("reply", call_id, node.recent[key]))
                return
            if key in node.inflight_keys:
                node.tasks[node.inflight_keys[key]].callers.append(call_id)
                return
            node.inflight_keys[key] = call_id
        handler = handlers.HANDLERS[kind]
        self._spawn(nid, call_id, kind, [call_id], lambda task: handler(self, nid, task, *body[1:]), body)

    def _complete(self, call_id: Any, result: Result) -> None:
        """A call's outcome reaches whoever waits for it (if anyone still does)."""
        waiter = self.calls.pop(call_id, None)
        if waiter is None:
            return
        if waiter[0] == "task":
            _, nid, tid = waiter
            task = self.nodes[nid].tasks.get(tid)
            if task is not None and task.blocked is not None and task.blocked[1] == call_id:
                self.ready.append((nid, tid, result))
        elif waiter[0] == "client":
            self._client_done(self.clients[waiter[1]], result)
        elif waiter[0] == "gc" and result[0] == "ok":
            self.gc_answered[waiter[1]].add(waiter[2])
            self.checker.gc_progress(waiter[1])

    def _client_done(self, client: Client, result: Result) -> None:
        op, chunk = client.script[client.pc]
        client.call = None
        if client.healer:
            client.outcomes.append((chunk, result))
        if result[0] == "ok":
            if op == "read":
                self.checker.read_done(chunk, client.epoch, client.read_floor, result[1], client.cid)
            else:
                self.checker.acked(chunk, client.epoch, result[1], op == "remove")
        elif client.attempt <= client.retries and not result[1].startswith("gone"):
            return  # retried by a later ("client", ...) choice
        client.pc += 1
        client.attempt = 0

    # -- tasks ----------------------------------------------------------------

    def _spawn(self, nid: int, tid: Any, kind: str, callers: list[Any], make: Any, origin: tuple[Any, ...]) -> None:
        node = self.nodes[nid]
        task = Task(tid, kind, None, origin, callers=callers)  # type: ignore[arg-type]
        task.gen = make(task)
        node.tasks[tid] = task
        self.ready.append((nid, tid, None))

    def _run_ready(self) -> None:
        while True:
            while self.ready:
                nid, tid, value = self.ready.pop(0)
                task = self.nodes[nid].tasks.get(tid)
                if task is not None:
                    self._advance(self.nodes[nid], task, value)
            if not self._wake_drained():
                return

    def _wake_drained(self) -> bool:
        woke = False
        for node in self.nodes.values():
            for task in node.tasks.values():
                if task.blocked and task.blocked[0] == "drain" and not any(
                        t.admitted is not None and t.admitted < task.blocked[1] for t in node.tasks.values()):
                    task.blocked = None
                    self.ready.append((node.nid, task.tid, None))
                    woke = True
        return woke

    def _advance(self, node: Node, task: Task, value: Any) -> None:
        """Run a task until it blocks or ends."""
        task.blocked = None
        while True:
            task.inputs.append(value)
            try:
                effect = task.gen.send(value)
            except StopIteration as stop:
                self._finish(node, task, stop.value)
                return
            value = None
            what = effect[0]
            if what == "admit":
                task.admitted = effect[1]
            elif what == "lock":
                chunk = effect[1]
                if chunk in node.locks:
                    node.waiters.setdefault(chunk, []).append(task.tid)
                    task.blocked = effect
                    return
                node.locks[chunk] = task.tid
            elif what == "unlock":
                self._unlock(node, effect[1])
            elif what == "io":
                if not self.scope.async_io:
                    value = disk_op(self.rules, node, effect[1])
                    continue
                io_id = (task.tid, task.seq)
                task.seq += 1
                node.io_queue.append((io_id, task.tid, effect[1]))
                task.blocked = ("io", io_id)
                return
            elif what == "call":
                call_id = (task.tid, task.seq)
                task.seq += 1
                task.blocked = ("call", call_id, effect[1])
                self._call(call_id, ("task", node.nid, task.tid), effect[1], effect[2])
                return
            elif what == "drain":
                task.blocked = effect
                self._wake_drained()
                if task.blocked is not None:
                    return
                self.ready = [r for r in self.ready if r[1] != task.tid]
            else:
                raise AssertionError(effect)

    def _unlock(self, node: Node, chunk: Any) -> None:
        del node.locks[chunk]
        queue = node.waiters.get(chunk, [])
        while queue:
            tid = queue.pop(0)
            if tid in node.tasks:
                node.locks[chunk] = tid
                self.ready.append((node.nid, tid, None))
                break
        if not queue:
            node.waiters.pop(chunk, None)

    def _kill(self, node: Node, task: Task) -> None:
        """End a task without running the rest of it (crash, legacy cancellation)."""
        node.tasks.pop(task.tid, None)
        for chunk in [c for c, owner in node.locks.items() if owner == task.tid]:
            self._unlock(node, chunk)
        for queue in node.waiters.values():
            if task.tid in queue:
                queue.remove(task.tid)
        for key in [k for k, t in node.inflight_keys.items() if t == task.tid]:
            del node.inflight_keys[key]
        if node.job_task == task.tid:
            node.job_task = None

    def _finish(self, node: Node, task: Task, result: Result) -> None:
        if task.kind == "resync" and result[0] == "ok" and node.job_task == task.tid:
            node.job_done = True  # (a job the chain moved past ends without counting)
        self._kill(node, task)
        if task.kind == "write" and result[0] == "ok":
            node.recent[task.origin[2].key] = result
        if task.reply_lost:
            return
        for call_id in task.callers:
            self._send(("rep", call_id), self.calls.get(call_id, ("none",)), ("reply", call_id, result))

    # -- fingerprint ------------------------------------------------------------

    def fingerprint(self) -> int:
        """A hash of everything that decides the future (and the checker's memory)."""
        nodes = []
        for n in self.nodes.values():
            tasks = sorted((repr(t.tid), t.origin, tuple(t.inputs), t.reply_lost, t.stopping, tuple(t.callers))
                           for t in n.tasks.values())
            nodes.append((n.alive, n.registered, n.incarnation, sorted(n.disk.items()), sorted(n.gone),
                          n.view, n.synced_at, sorted(n.locks.items()), sorted(n.waiters.items()),
                          n.io_queue, sorted(n.recent.items()), n.job, repr(n.job_task), n.job_done, tasks))
        state = (nodes, sorted(repr(m) for m in self.net.values()), sorted(repr(c) for c in self.calls.items()),
                 self.chain, sorted(self.local.items()), sorted(self.incarnations.items()),
                 [(c.pc, c.attempt, c.call, c.epoch, c.read_floor[0]) for c in self.clients.values()],
                 sorted(self.deleted), sorted((f, sorted(a)) for f, a in self.gc_answered.items()),
                 sorted(self.gc_attempts.items()), sorted(self.used.items()), self.checker.memory())
        return hash(repr(state))


def violation_of(world: World, choice: Choice) -> Violation | None:
    try:
        world.step(choice)
    except Violation as v:
        return v
    return None

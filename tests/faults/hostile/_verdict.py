"""The cluster the hostile scenarios break (`HostileCluster`: FaultCluster from
bench/failover_cluster.py, with a heartbeat timeout of HOSTILE_TIMEOUT_S) and its
verdict (`HostileCluster.verdict`), once the load has stopped:

1. wait until every target is SERVING; read every chunk from every target with the
   raw Storage.Read RPC naming the target: all must hold the same (commit version,
   bytes);
2. for each replica in turn, freeze the other storage servers (SIGSTOP) until the
   manager has taken them out (routing shows that replica alone serving), read every
   file through a normal Client, SIGCONT them and wait until the chain is whole again:
   every replica must return the same bytes for every file;
3. the bytes must be what the acknowledged writes allow. Per slot: the payload found
   must belong to a write W of that slot; if W was acknowledged, no acknowledged write
   of that slot may have *begun after W's acknowledgement* (such a write is ordered
   after W, so a replica still showing W lost it). A write of a session counts as
   acknowledged when its close() returned (the earliest moment its writer knows: a
   later "end" only makes the rule more lenient, never wrong). A write never
   acknowledged (failed, or cancelled at its deadline) may take effect at any moment
   after it began, even after later writes (its request may still be in flight), so
   its payload is always allowed: the agreement checks and the witness are what catch
   a cancelled write that landed on one replica only. A writer's own file (nobody
   else writes it) must hold its last write when that write was acknowledged; after a
   failed rewrite only agreement between replicas is judged;
4. every chunk must still be writable: each chunk of each file gets new bytes through
   the Client, which must be acknowledged and read back, from every replica alike;
5. no storage server logged an ERROR (a target failed by a "disk error" a race made,
   a bug answered INTERNAL).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from typing import Any

import crc32c
import grpc

from emberfs.bench.failover_cluster import FaultCluster
from emberfs.client import SyncClient
from emberfs.client._plan import effective_stripe
from emberfs.common.errors import from_rpc_error
from emberfs.common.layout import chain_for_chunk
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, storage_pb2, storage_pb2_grpc

from ._slots import SHARED, LoadReport, slot_problem

HOSTILE_TIMEOUT_S = 3.0  # heartbeat timeout: a restart at once lands inside it
HEAL_S = 60.0


class HostileCluster(FaultCluster):
    """FaultCluster (bench/failover_cluster.py) plus the per-replica verdict of this suite."""

    def paths(self, report: LoadReport) -> list[str]:
        return [*SHARED, *sorted(report.own)]

    def replica_states(self, paths: list[str]) -> dict[tuple[str, int], dict[int, Any]]:
        """{(path, chunk): {target: (commit version, bytes) or an error}} for every chunk
        of every file, read from every target of its chain with the raw Read RPC."""
        view = self.view()
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
            layouts = {path: fs.stat(path) for path in paths}
        out: dict[tuple[str, int], dict[int, Any]] = {}
        channels: dict[str, grpc.Channel] = {}
        try:
            for path, st in layouts.items():
                for index in range(-(-st.st_size // st.chunk_size)):
                    chain = view.chain(chain_for_chunk(st.chain_ids, effective_stripe(st.stripe, st.chain_ids), index))
                    for target in chain.targets:
                        address = view.address_of(target.target_id)
                        if address not in channels:
                            channels[address] = grpc.insecure_channel(address, options=channel_options())
                        request = storage_pb2.ReadRequest(
                            header=common_pb2.RequestHeader(client_id="hostile-verdict", uid=0, gid=0),
                            chain_id=chain.chain_id, chain_version=chain.chain_version,
                            chunk=storage_pb2.ChunkId(inode_id=st.st_ino, chunk_index=index),
                            offset=0, length=st.chunk_size, target_id=target.target_id)
                        held = _read_settled(storage_pb2_grpc.StorageStub(channels[address]), request)
                        out.setdefault((path, index), {})[target.target_id] = held
        finally:
            for channel in channels.values():
                channel.close()
        return out

    def read_alone(self, target: int, paths: list[str]) -> dict[str, Any]:
        """Freeze every other storage server until `target` serves alone, read every file
        through a Client, wake them, and wait until the chain is whole again."""
        view = self.view()
        chain_id = view.targets[target].chain_id
        others = [self.storage[view.node_of(t.target_id) - 1] for t in view.chain(chain_id).targets
                  if t.target_id != target]
        for server in others:
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
        try:
            self.wait_for(f"target {target} alone serving", lambda v: v.chain(chain_id).serving == (target,),
                          timeout=30.0)
            got: dict[str, Any] = {}
            with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
                for path in paths:
                    try:
                        got[path] = fs.read_file(path)
                    except OSError as exc:
                        got[path] = repr(exc)
        finally:
            for server in others:
                if server.pid is not None:
                    os.kill(server.pid, signal.SIGCONT)
        self.wait_all_serving(HEAL_S)
        return got

    def verdict(self, report: LoadReport, *, name: str, kills: int = 0) -> None:
        """Judge every replica (module docstring, steps 1-4); print one summary line and
        fail with every problem found."""
        problems: list[str] = []
        self.wait_all_serving(HEAL_S)
        paths = self.paths(report)
        states = self.replica_states(paths)
        raw_split = [f"{path} chunk {index}: " + "; ".join(f"target {t}: {_show(h)}" for t, h in held.items())
                     for (path, index), held in states.items() if len(set(map(repr, held.values()))) != 1]
        problems += [f"replicas disagree (raw reads): {line}" for line in raw_split]
        targets = sorted({t for held in states.values() for t in held})
        alone = {target: self.read_alone(target, paths) for target in targets}
        file_split = [path for path in paths if len({repr(alone[t][path]) for t in targets}) != 1]
        for path in file_split:
            problems.append(f"replicas disagree (each serving alone): {path}: "
                            + "; ".join(f"target {t}: {_show(alone[t][path])}" for t in targets))
        for target in targets:
            for path in SHARED:
                data = alone[target][path]
                if not isinstance(data, bytes):
                    problems.append(f"target {target} alone: {path}: {data}")
                    continue
                why = slot_problem(path, data, report.slots, report.shape)
                if why:
                    problems.append(f"target {target} alone: {why}")
            for path, own in report.own.items():
                if not own.uncertain and alone[target][path] != own.data:
                    problems.append(f"target {target} alone: {path} lost its last acknowledged write "
                                    f"({_show(alone[target][path])}, expected {len(own.data)} bytes)")
        unwritable = self.rewrite_everything(paths)
        problems += unwritable
        after = self.replica_states(paths)
        problems += [f"replicas disagree after the rewrite: {path} chunk {index}: "
                     + "; ".join(f"target {t}: {_show(h)}" for t, h in held.items())
                     for (path, index), held in after.items() if len(set(map(repr, held.values()))) != 1]
        problems += [f"read during the run: {line}" for line in report.bad_reads]
        problems += [f"witness: {line}" for line in report.witness_problems]
        problems += [f"storage log: {line}" for line in self.logged_errors()]
        print(f"\nhostile[{name}]: {kills} kills, {report.acked} writes acknowledged, {report.failed} failed "
              f"({report.cancelled} past their deadline), {report.reads} reads ({len(report.bad_reads)} wrong), "
              f"{report.witnessed} replica reads by the witness ({len(report.witness_problems)} problems); "
              f"replicas agree on {len(states) - len(raw_split)}/{len(states)} chunks (raw reads), "
              f"{len(paths) - len(file_split)}/{len(paths)} files (each serving alone); "
              f"{len(unwritable)} chunks unwritable; {len(problems)} problems", flush=True)
        assert not problems, "\n".join(problems[:30]) + f"\n(first failures: {report.failures[:5]})\n" + self.describe()

    def logged_errors(self) -> list[str]:
        """ERROR lines of the storage servers' logs (a target failed by a "disk error",
        a bug answered INTERNAL): none is expected under these faults."""
        found = []
        for server in self.storage:
            try:
                text = server.log_path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            lines = text.splitlines()
            for at, line in enumerate(lines):
                if " ERROR " in line:  # with its traceback, if one follows, so a failure says why
                    trace = [more[:200] for more in itertools.takewhile(lambda more: not more[:4].isdigit(),
                                                                          lines[at + 1:at + 60])]
                    found.append("\n    ".join([f"{server.log_path.name}: {line[:300]}", *trace[-12:]]))
        return found[:10]

    def rewrite_everything(self, paths: list[str]) -> list[str]:
        """Give every chunk of every file new bytes through a Client; each write must be
        acknowledged and read back. Returns the problems."""
        problems = []
        rand = random.Random(1515)
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            for path in paths:
                st = fs.stat(path)
                size, chunk = st.st_size, st.chunk_size
                expected = bytearray(fs.read_file(path))
                for index in range(-(-size // chunk)):
                    fresh = rand.randbytes(min(chunk, size - index * chunk))
                    try:
                        with fs.open(path, "r+b") as f:
                            f.seek(index * chunk)
                            f.write(fresh)
                    except OSError as exc:
                        problems.append(f"unwritable: {path} chunk {index}: {exc!r}"[:400])
                        continue
                    expected[index * chunk:index * chunk + len(fresh)] = fresh
                if fs.read_file(path) != bytes(expected):
                    problems.append(f"after the rewrite {path} does not read back")
        return problems


def _read_settled(stub: storage_pb2_grpc.StorageStub, request: storage_pb2.ReadRequest,
                  attempts: int = 5) -> Any:
    """(commit version, bytes) of one replica, or its error if it keeps failing (a
    retryable answer is asked again a few times: nothing is written any more)."""
    for attempt in range(1, attempts + 1):
        try:
            reply = stub.Read(request, timeout=10.0)
            return reply.commit_version, reply.data
        except grpc.RpcError as exc:
            retryable = from_rpc_error(exc).retryable
            if not retryable or attempt == attempts:
                return f"{exc.code()} {exc.details()}"
        time.sleep(0.2)
    raise AssertionError("unreachable")


def _show(held: Any) -> str:
    if isinstance(held, tuple):
        version, data = held
        return f"v{version} {len(data)} bytes crc {crc32c.crc32c(data):#010x}"
    if isinstance(held, bytes):
        return f"{len(held)} bytes crc {crc32c.crc32c(held):#010x}"
    return str(held)[:200]

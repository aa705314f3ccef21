"""A running LocalCluster to break, and the questions asked of it while it breaks and
heals (the failover benchmark and the fault suite share it): which server holds the
head, middle or tail of a chain (from the routing), waiting for chain states, reading
every file back, and reading each replica on its own.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import grpc

from emberfs.client import SyncClient
from emberfs.client._admin import cluster_problems
from emberfs.client._launch import LocalCluster, ServerProcess
from emberfs.common.chainstate import PublicState
from emberfs.common.layout import chain_for_chunk
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, mgmt_pb2, mgmt_pb2_grpc, storage_pb2, storage_pb2_grpc

from .failover_workload import difference, st_chunk

__all__ = ["HEAL_TIMEOUT_S", "HEARTBEAT_INTERVAL_S", "HEARTBEAT_TIMEOUT_S", "ROLES", "FaultCluster"]

HEARTBEAT_INTERVAL_S = 0.2
HEARTBEAT_TIMEOUT_S = 1.0
HEAL_TIMEOUT_S = 60.0  # a restarted target must be SERVING again within this
ROLES = ("head", "middle", "tail")


class FaultCluster:
    """A running LocalCluster to break, and the questions asked of it while it breaks
    and heals: which server holds which role of a chain, has a target reached a state,
    do files read back. All blocking (call from the main thread)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.meta = cluster.meta_address
        # Raw GetRouting with known_version 0: a Client's cached routing is refreshed
        # only when the routing version moves, and targets' chunk counts do not move it.
        self._channel = grpc.insecure_channel(self.meta, options=channel_options())
        self._mgmt = mgmt_pb2_grpc.MgmtStub(self._channel)

    def close(self) -> None:
        self._channel.close()
        for proc in [self.cluster.meta, *self.cluster.storage]:
            if proc.running and proc.pid is not None:
                os.kill(proc.pid, signal.SIGCONT)  # a SIGSTOPped server must be able to stop
        self.cluster.stop(grace=5.0)

    @property
    def storage(self) -> list[ServerProcess]:
        return self.cluster.storage

    def view(self) -> RoutingView:
        """The manager's routing now (ConnectionError while the metaserver is down)."""
        request = mgmt_pb2.GetRoutingRequest(header=common_pb2.RequestHeader(client_id="faults"), known_version=0)
        try:
            return RoutingView(self._mgmt.GetRouting(request, timeout=5.0).routing)
        except grpc.RpcError as exc:
            raise ConnectionError(f"GetRouting: {exc.code()}") from None

    def chain_id(self) -> int:
        return self.view().chain_ids()[0]

    def role(self, name: str, chain_id: int | None = None) -> int:
        """The target that is head, middle or tail of the chain's serving targets."""
        chain = self.view().chain(chain_id or self.chain_id())
        serving = chain.serving
        if len(serving) != len(ROLES):
            raise RuntimeError(f"a role needs {len(ROLES)} replicas serving: {chain}")
        return serving[ROLES.index(name)]

    def server_of(self, target_id: int) -> ServerProcess:
        return self.storage[self.view().node_of(target_id) - 1]

    def state_of(self, target_id: int) -> PublicState | None:
        view = self.view()
        return view.chain(view.targets[target_id].chain_id).state_of(target_id)

    def wait_for(self, what: str, check: Callable[[RoutingView], bool], timeout: float = 30.0) -> float:
        """Poll the routing until check(view) holds; the seconds it took."""
        began = time.monotonic()
        deadline = began + timeout
        while True:
            try:
                if check(self.view()):
                    return time.monotonic() - began
            except (ConnectionError, TimeoutError):
                pass  # the metaserver is restarting
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not within {timeout:g} s: {what}\n{self.describe()}")
            time.sleep(0.05)

    def wait_state(self, target_id: int, state: PublicState, timeout: float = 30.0) -> float:
        def check(view: RoutingView) -> bool:
            return view.chain(view.targets[target_id].chain_id).state_of(target_id) == state

        return self.wait_for(f"target {target_id} {state.name}", check, timeout)

    def wait_all_serving(self, timeout: float = HEAL_TIMEOUT_S) -> float:
        def check(view: RoutingView) -> bool:
            return all(n.alive for n in view.proto.nodes) and not cluster_problems(view.proto)

        return self.wait_for("every node alive and every target SERVING", check, timeout)

    def describe(self) -> str:
        """The chain table and each server's log tail, for a failure message."""
        lines = []
        try:
            view = self.view()
            lines += [f"routing v{view.version}: {c}" for c in view.chains.values()]
            lines += [f"node {n.node_id} alive={n.alive}" for n in view.proto.nodes]
        except Exception as exc:  # noqa: BLE001
            lines.append(f"(no routing: {exc!r})")
        for name, proc in self.cluster.processes():
            lines.append(f"--- {name} ({'running' if proc.running else 'down'}), log tail:")
            lines.append(proc.log_tail(15))
        return "\n".join(lines)

    def mismatches(self, files: dict[str, bytes], history: dict[str, list[bytes]] | None = None) -> list[str]:
        """Every file whose bytes differ from `files`, read by a fresh client."""
        wrong = []
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
            for path, expected in sorted(files.items()):
                try:
                    data = fs.read_file(path)
                except OSError as exc:
                    wrong.append(f"{path}: {exc!r}")
                    continue
                if data != expected:
                    why = difference(expected, data, (history or {}).get(path, ()), st_chunk(fs, path))
                    wrong.append(f"{path}: {why}")
        return wrong

    def replica_divergence(self, files: dict[str, bytes], history: dict[str, list[bytes]] | None = None) -> list[str]:
        """Every (file, chunk, serving replica) whose bytes differ from `files`: each
        replica read on its own (raw Storage.Read naming the target), so a replica that
        missed an update shows even when the client happens to read another."""
        wrong = []
        view = self.view()
        client_id = f"faults-{os.getpid()}"
        with SyncClient(self.meta, uid=0, gid=0, groups=[], timeout=60.0) as fs:
            layouts = {path: fs.stat(path) for path in files}
        channels: dict[str, grpc.Channel] = {}
        try:
            for n, (path, expected) in enumerate(sorted(files.items())):
                st = layouts[path]
                for index in range((len(expected) + st.chunk_size - 1) // st.chunk_size):
                    want = expected[index * st.chunk_size : (index + 1) * st.chunk_size]
                    chain = view.chain(chain_for_chunk(st.chain_ids, st.stripe, index))
                    for target in chain.serving:
                        address = view.address_of(target)
                        if address not in channels:
                            channels[address] = grpc.insecure_channel(address, options=channel_options())
                        stub = storage_pb2_grpc.StorageStub(channels[address])
                        request = storage_pb2.ReadRequest(
                            header=common_pb2.RequestHeader(client_id=client_id, request_id=n * 1000 + index + 1),
                            chain_id=chain.chain_id, chain_version=chain.chain_version,
                            chunk=storage_pb2.ChunkId(inode_id=st.st_ino, chunk_index=index),
                            offset=0, length=len(want), target_id=target,
                        )
                        try:
                            got = stub.Read(request, timeout=10.0).data
                        except grpc.RpcError as exc:
                            wrong.append(f"{path} chunk {index} on target {target}: {exc.code()} {exc.details()}")
                            continue
                        got = got.ljust(len(want), b"\0")
                        if got != want:
                            olds = [old[index * st.chunk_size : (index + 1) * st.chunk_size].ljust(len(want), b"\0")
                                    for old in (history or {}).get(path, ())]
                            why = difference(want, got, olds, st.chunk_size)
                            wrong.append(f"{path} chunk {index} on target {target}: {why}")
        finally:
            for channel in channels.values():
                channel.close()
        return wrong

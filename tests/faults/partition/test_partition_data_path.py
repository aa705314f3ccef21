"""Network partitions of the data path, under continuous writes and byte-verified reads:
metaserver (LMDB) in host "meta", storage servers in "s1".."s3", one chain of 3
replicas, the load in the root namespace (it reaches every host over the bridge).
Each cut lasts CUT_S, longer than the heartbeat timeout (1 s), then heals.

- s3 cut off from everyone: its lease lapses, so it refuses a reader on its own side of
  the partition (a probe inside s3's namespace) before the manager rebuilds the chain
  without it; writes go on through the other two; healed, s3 resyncs and serves again.
- s3 cut off from the metaserver only (peers and clients still reach it): the same, and
  here the lease is all that stops s3, since every client can still ask it.
- the metaserver cut off from every storage server: every lease lapses and every server
  refuses reads (the cluster stops serving: nothing can vouch for any replica), the
  manager counts every node dead; healed, all serve again and nothing is lost.

Each prints a table (fault, writes acknowledged, failed, lost, longest stalls).
"""

from __future__ import annotations

import time

from emberfs.bench.failover_cluster import HEARTBEAT_TIMEOUT_S, ROLES
from emberfs.bench.failover_workload import CHUNK, Workload
from emberfs.client import SyncClient
from emberfs.common.chainstate import PublicState
from emberfs.common.routing import RoutingView

from ._netcluster import NetCluster, print_table

CUT_S = 3.0  # > HEARTBEAT_TIMEOUT_S: leases lapse and the manager acts while the cut lasts
LAPSED_S = HEARTBEAT_TIMEOUT_S + 0.3  # after the cut, by then every cut-off lease has lapsed
STALL_BOUND_S = 20.0  # the cut, the manager noticing, the resync after the heal, with room
PROBED = "/probed"
OLD, NEW = b"A" * CHUNK, b"B" * CHUNK


def _target_of_node(cluster: NetCluster, node_id: int) -> int:
    return next(t for t, info in cluster.view().targets.items() if info.node_id == node_id)


def _start(cluster: NetCluster, loads: list[Workload]) -> Workload:
    with SyncClient(cluster.meta, uid=0, gid=0, groups=[]) as fs:
        fs.write_file(PROBED, OLD)
    load = Workload(cluster.meta).start()
    loads.append(load)
    load.wait_acks(20)
    return load


def _finish(cluster: NetCluster, load: Workload, fault: str, cut_at: float, probed: bytes) -> None:
    """Once healed: every target serves again, the load goes on, then the verdict
    (`probed`: what PROBED must hold)."""
    cluster.wait_all_serving()
    load.wait_acks(20, timeout=30.0)
    report = load.stop()
    lost, problems = cluster.partition_verdict(report, extra={PROBED: probed})
    print_table(fault, [(fault, report, lost)])
    assert lost == 0 and not problems, "\n".join(problems[:20]) + "\n" + report.summary()
    assert report.failed_writes == 0, report.write_failures
    assert load.longest_stall(cut_at) < STALL_BOUND_S, report.summary()
    assert load.longest_read_stall(cut_at) < STALL_BOUND_S, report.summary()


def _storage_cut(cluster: NetCluster, loads: list[Workload], *, from_meta_only: bool) -> None:
    hosts = cluster.hosts
    load = _start(cluster, loads)
    s3 = cluster.storage[2]
    s3_host, meta_host = cluster.host_of(s3), cluster.host_of(cluster.cluster.meta)
    target = _target_of_node(cluster, 3)
    role = ROLES[cluster.view().chain(cluster.chain_id()).serving.index(target)]
    # The reader that keeps the old routing sits where it can still reach s3: on s3's own
    # side when s3 is cut off from everyone, anywhere (the root namespace) otherwise.
    probe = cluster.start_probe(hosts.root if from_meta_only else s3_host, s3, PROBED, target, CUT_S + 3.0)
    cut_at = time.monotonic()
    if from_meta_only:
        hosts.partition(s3_host, meta_host)
    else:
        hosts.partition(s3_host)
    try:
        cluster.wait_state(target, PublicState.OFFLINE, timeout=10.0)
        offline_at = time.monotonic()
        with SyncClient(cluster.meta, uid=0, gid=0, groups=[], timeout=30.0) as fs:
            fs.write_file(PROBED, NEW)  # acknowledged by the two replicas left
        acked_before_heal = load.acknowledged
        load.wait_acks(10, timeout=20.0)  # writes go on without s3
        time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
    finally:
        hosts.heal()
    healed_at = time.monotonic()
    reads = cluster.probe_result(probe)
    served = reads.served_between(offline_at, healed_at)
    assert not served, (f"s3 served {len(served)} reads after the manager took it out "
                        f"({offline_at - cut_at:.2f} s after the cut): {reads.summary()}")
    refused = reads.refused_between(cut_at + LAPSED_S, healed_at, "lease expired")
    assert refused > 0, f"the probe never saw s3 refuse for its lease: {reads.summary()}"
    assert load.acknowledged - acked_before_heal >= 10
    fault = f"s3 ({role}) cut off from {'the metaserver' if from_meta_only else 'everyone'} {CUT_S:g} s"
    _finish(cluster, load, fault, cut_at, NEW)


def test_storage_cut_off_from_everyone(net_cluster: NetCluster, partition_load: list[Workload]) -> None:
    _storage_cut(net_cluster, partition_load, from_meta_only=False)


def test_storage_cut_off_from_the_metaserver_only(net_cluster: NetCluster, partition_load: list[Workload]) -> None:
    _storage_cut(net_cluster, partition_load, from_meta_only=True)


def test_metaserver_cut_off_from_every_storage_server(net_cluster: NetCluster,
                                                      partition_load: list[Workload]) -> None:
    cluster, hosts = net_cluster, net_cluster.hosts
    load = _start(cluster, partition_load)
    meta_host = cluster.host_of(cluster.cluster.meta)
    probes = {n: cluster.start_probe(hosts.root, cluster.storage[n - 1], PROBED, _target_of_node(cluster, n),
                                     CUT_S + 3.0) for n in (1, 2, 3)}
    cut_at = time.monotonic()
    for server in cluster.storage:
        hosts.partition(meta_host, cluster.host_of(server))
    try:
        # The manager hears no heartbeat: every node dead, the chain left to one LASTSRV.
        cluster.wait_for("every storage node dead", lambda view: not any(n.alive for n in view.proto.nodes),
                         timeout=CUT_S + 5.0)
        dead_view: RoutingView = cluster.view()
        time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
    finally:
        hosts.heal()
    healed_at = time.monotonic()
    for n, probe in probes.items():
        reads = cluster.probe_result(probe)
        served = reads.served_between(cut_at + LAPSED_S, healed_at)
        assert not served, f"s{n} served {len(served)} reads with its lease lapsed: {reads.summary()}"
        assert reads.refused_between(cut_at + LAPSED_S, healed_at, "lease expired") > 0, (
            f"s{n} never refused for its lease: {reads.summary()}")
    chain = dead_view.chain(dead_view.chain_ids()[0])
    assert not chain.serving, f"a target served with every node dead: {chain}"
    print(f"\nwith every node dead the manager published: {chain}")
    _finish(cluster, load, f"metaserver cut off from s1-s3 {CUT_S:g} s", cut_at, OLD)

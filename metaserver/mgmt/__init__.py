"""The cluster manager (3FS mgmtd) hosted by the metaserver, and chunk GC.

    plan.py       which targets form which chain (pure)
    state.py      ClusterState records and every manager decision (pure, table-tested)
    table.py      the records' encoding in the metaserver LMDB database `mgmt`
    wire.py       records <-> Mgmt protos (RoutingInfo, reports)
    manager.py    ClusterManager: the I/O around state.py, heartbeat clock, tick task
    allocator.py  TableChains: new files' chains from the chain table
    servicer.py   the thin Mgmt gRPC service
    gc.py         ChunkCollector: RemoveChunks on every replica of deleted files
"""

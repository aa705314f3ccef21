"""A reader that keeps the routing it started with: reads one chunk from one storage
server with the raw Storage.Read RPC again and again for a while, and prints one JSON
line per read: {"t": when it began (time.monotonic(), one clock for every process on
the machine), "data": the first 16 bytes in hex, "len": n} or {"t", "error": "CODE
details"}. Run as a program so it can run inside a host's network namespace (on the
cut-off server's side of a partition):

    python _probe.py ADDRESS CHAIN_ID CHAIN_VERSION INODE TARGET LENGTH SECONDS
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import grpc

from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, storage_pb2, storage_pb2_grpc

READ_TIMEOUT_S = 1.0
PAUSE_S = 0.02


def main(argv: list[str]) -> int:
    address, chain_id, chain_version, inode, target, length, seconds = argv
    client_id = uuid.uuid4().hex
    deadline = time.monotonic() + float(seconds)
    with grpc.insecure_channel(address, options=channel_options()) as channel:
        stub = storage_pb2_grpc.StorageStub(channel)
        request_id = 0
        while time.monotonic() < deadline:  # bounded: each read times out in READ_TIMEOUT_S
            request_id += 1
            request = storage_pb2.ReadRequest(
                header=common_pb2.RequestHeader(client_id=client_id, request_id=request_id),
                chain_id=int(chain_id), chain_version=int(chain_version),
                chunk=storage_pb2.ChunkId(inode_id=int(inode), chunk_index=0),
                offset=0, length=int(length), target_id=int(target))
            began = time.monotonic()
            try:
                data = stub.Read(request, timeout=READ_TIMEOUT_S).data
                line = {"t": began, "data": data[:16].hex(), "len": len(data)}
            except grpc.RpcError as exc:
                line = {"t": began, "error": f"{exc.code().name} {exc.details()}"}
            print(json.dumps(line), flush=True)
            time.sleep(PAUSE_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Capabilities on the data path (issue 16) against a real cluster on 127.0.0.1 with tokens.

The refusal table of test_auth.py, extended to the bytes: a user reads and writes
another user's 0600 file through every client API (all refused, the bytes unchanged);
raw gRPC Read/Write and raw bulk READ/WRITE frames with no, forged, expired,
other-inode and read-only-for-write capabilities are refused and the connection goes
on; a chmod that takes read permission away bites once the (2 s) capability TTL has
passed; a key rotation keeps old capabilities valid during the roll and refuses them
once the old key is retired; hypothesis throws capability bytes at a live server.

Run: python -m pytest tests/integration/test_auth_datapath.py -q -s -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import crc32c
import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emberfs.client import Client, SyncClient
from emberfs.client._launch import LocalCluster
from emberfs.client.data import RecordWriter
from emberfs.client.datasets import FileDataset, RecordDataset
from emberfs.client.cli import main as cli_main
from emberfs.common import bulkwire as w
from emberfs.common import capability, capkeys, errors
from emberfs.common.authgrpc import bearer_metadata
from emberfs.common.bulkclient import BulkPool
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc, storage_pb2, storage_pb2_grpc

TOKENS = {
    "alice": "user-token-alice-0123456789abcdef",
    "bob": "user-token-bob-0123456789abcdef00",
    "admin": "admin-token-ops-0123456789abcdef",
    "server": "server-token-storage-0123456789ab",
}
TTL_S = 2.0
CHUNK = 64 * 1024
SECRET = b"root's secret bytes " * 5000  # several chunks
DENIED, OK = "PERMISSION_DENIED", "OK"


def _run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("capauth")
    tokens_file = base / "tokens.json"
    tokens_file.write_text(json.dumps({"tokens": [
        {"name": "alice", "token": TOKENS["alice"], "uid": 1000, "gid": 1000},
        {"name": "bob", "token": TOKENS["bob"], "uid": 2000, "gid": 2000},
        {"name": "ops", "token": TOKENS["admin"], "admin": True},
        {"name": "storage", "token": TOKENS["server"], "server": True},
    ]}))
    tokens_file.chmod(0o600)
    c = LocalCluster(base / "cluster", nodes=2, replicas=2, chunk_size=CHUNK, tokens_file=tokens_file,
                     capability_ttl=TTL_S, heartbeat_timeout=15.0)
    c.start(timeout=60.0)
    try:
        async def setup() -> None:
            async with Client(c.meta_address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
                await root.write_file("/secret", SECRET, mode=0o600)
                await root.makedirs("/open", exist_ok=True)
                await root.chmod("/open", 0o1777)
            async with Client(c.meta_address, token=TOKENS["alice"]) as alice:
                await alice.write_file("/open/alice", b"alice's own bytes" * 1000, mode=0o600)

        _run(setup())
        yield c
    finally:
        c.stop()


async def _secret_unchanged(c: LocalCluster) -> None:
    async with Client(c.meta_address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
        assert await root.read_file("/secret") == SECRET
        assert (await root.stat("/secret")).st_size == len(SECRET)


# -- every client API, as bob on root's 0600 file -------------------------------------------


def _client_apis(address: str) -> dict[str, Callable[[Client], Awaitable[Any]]]:
    async def read_into(fs: Client) -> Any:
        return await fs.read_into("/secret", bytearray(1000))

    async def open_rb(fs: Client) -> Any:
        async with fs.open("/secret", "rb") as f:
            return await f.read()

    async def open_mode(fs: Client, mode: str) -> Any:
        async with fs.open("/secret", mode) as f:
            await f.write(b"overwritten")

    return {
        "read_file": lambda fs: fs.read_file("/secret"),
        "read_range": lambda fs: fs.read_range("/secret", 0, 100),
        "read_ranges": lambda fs: fs.read_ranges([("/secret", 0, 10), ("/open/alice", 0, 10)]),
        "read_into": read_into,
        "open rb": open_rb,
        "write_file": lambda fs: fs.write_file("/secret", b"overwritten"),
        "open wb": lambda fs: open_mode(fs, "wb"),
        "open ab": lambda fs: open_mode(fs, "ab"),
        "open r+b": lambda fs: open_mode(fs, "r+b"),
        "truncate": lambda fs: fs.truncate("/secret", 1),
    }


def test_every_client_api_refuses_another_users_0600_file(cluster: LocalCluster, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    address = cluster.meta_address
    table: dict[str, str] = {}

    async def async_apis() -> None:
        async with Client(address, token=TOKENS["bob"]) as bob:
            for name, call in _client_apis(address).items():
                try:
                    await call(bob)
                    table[name] = OK
                except PermissionError as exc:
                    table[name] = f"PermissionError ({exc.strerror})"

    _run(async_apis())
    with SyncClient(address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as sync_root:
        with RecordWriter(sync_root, "/secret.rec") as shard:
            shard.write(b"sample zero")
        sync_root.chmod("/secret.rec", 0o600)
    with SyncClient(address, token=TOKENS["bob"]) as sync_bob:
        for name, sync_call in {"SyncClient.read_file": lambda: sync_bob.read_file("/secret"),
                                "SyncClient.open rb": lambda: sync_bob.open("/secret", "rb").read(),
                                "SyncClient.write_file": lambda: sync_bob.write_file("/secret", b"x"),
                                "RecordDataset[0]": lambda: RecordDataset(sync_bob, ["/secret.rec"])[0],
                                "FileDataset[0]": lambda: FileDataset(sync_bob, ["/secret"])[0]}.items():
            try:
                sync_call()
                table[name] = OK
            except PermissionError as exc:
                table[name] = f"PermissionError ({exc.strerror})"
    fsspec = pytest.importorskip("fsspec")
    from emberfs.client.fsspec import EmberFileSystem

    fs = EmberFileSystem(address=address, token=TOKENS["bob"], skip_instance_cache=True)
    for name, fs_call in {"fsspec cat_file": lambda: fs.cat_file("/secret"),
                          "fsspec open rb": lambda: fsspec.open(f"emberfs://{address}/secret", "rb",
                                                                token=TOKENS["bob"],
                                                                skip_instance_cache=True).open().read(),
                          "fsspec pipe_file": lambda: fs.pipe_file("/secret", b"x")}.items():
        try:
            fs_call()
            table[name] = OK
        except PermissionError as exc:
            table[name] = f"PermissionError ({exc.strerror})"
    token_file = tmp_path / "bob.token"
    token_file.write_text(TOKENS["bob"])
    monkeypatch.delenv("EMBERFS_TOKEN", raising=False)
    meta = ["--meta", address, "--timeout", "10", "--token-file", str(token_file)]
    capsys.readouterr()
    code = cli_main([*meta, "cat", "/secret"])
    out, err = capsys.readouterr()
    table["CLI cat"] = f"exit {code}: {err.strip()}"
    assert SECRET[:20].decode() not in out
    local = tmp_path / "x"
    local.write_bytes(b"x")
    code = cli_main([*meta, "put", "-q", str(local), "/secret"])
    table["CLI put"] = f"exit {code}: {capsys.readouterr().err.strip()}"
    with capsys.disabled():
        print("\ndata path, bob (uid 2000) on root's 0600 /secret:")
        for name, outcome in table.items():
            print(f"  {name:24} {outcome}")
    for name, outcome in table.items():
        if name.startswith("CLI"):
            assert outcome.startswith("exit 1") and "Permission denied" in outcome, (name, outcome)
        else:
            assert outcome.startswith("PermissionError"), (name, outcome)
    _run(_secret_unchanged(cluster))


# -- raw requests with bad capabilities ------------------------------------------------------


class Spot:
    """Where /secret's first chunk lives, and capabilities to try on it."""

    def __init__(self, c: LocalCluster) -> None:
        self.c = c

    async def load(self) -> None:
        async with Client(self.c.meta_address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
            self.secret = (await root.stat("/secret")).st_ino
            routing = await root.routing()
            layout = (await root._file("/secret"))[1]
        self.view = RoutingView(routing)
        self.chain = self.view.chain(layout.chain_of(0))
        self.head = self.chain.targets[0].target_id
        self.grpc_address = self.view.address_of(self.head)
        self.bulk_address = self.view.bulk_address_of(self.head)
        self.alice_read = await open_capability(self.c, "alice", "/open/alice", write=False)
        self.alice_file = capability.decode(self.alice_read.blob).inode_id

    def read(self, inode: int, cap: bytes) -> storage_pb2.ReadRequest:
        return storage_pb2.ReadRequest(header=common_pb2.RequestHeader(), chain_id=self.chain.chain_id,
                                       chain_version=self.chain.chain_version,
                                       chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=0), offset=0,
                                       length=64, target_id=self.head, capability=cap)

    def write(self, inode: int, cap: bytes, data: bytes = b"OVERWRITTEN") -> storage_pb2.WriteRequest:
        return storage_pb2.WriteRequest(
            header=common_pb2.RequestHeader(client_id="capfuzz", request_id=time.monotonic_ns()),
            chain_id=self.chain.chain_id, chain_version=self.chain.chain_version,
            chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=0), kind=storage_pb2.WRITE, offset=0, data=data,
            crc32c=crc32c.crc32c(data), length=len(data), chunk_size=CHUNK, capability=cap)


async def open_capability(c: LocalCluster, who: str, path: str, *, write: bool) -> meta_pb2.Capability:
    async with grpc.aio.insecure_channel(c.meta_address, options=channel_options()) as channel:
        reply = await meta_pb2_grpc.MetaStub(channel).Open(
            meta_pb2.OpenRequest(header=common_pb2.RequestHeader(), path=path, write=write),
            metadata=bearer_metadata(TOKENS[who]))
    return reply.capability


def _signed_with_cluster_key(c: LocalCluster, inode: int, rights: int, expires_ms: int) -> bytes:
    """What only the metaserver can make: the test reads the keys file to make an expired one."""
    assert c.keys_file is not None
    keys = capkeys.load_keys_file(c.keys_file)
    return capability.sign(keys.signing, keys.signing_key, inode, rights, expires_ms)


def _bad_capabilities(c: LocalCluster, spot: Spot) -> dict[str, tuple[str, int, bytes]]:
    """case -> (Read or Write, inode, capability): each must be refused."""
    now_ms = int(time.time() * 1000)
    forged = capability.sign(1, b"not the cluster key, 32 bytes!!!", spot.secret, 3, now_ms + 60_000)
    return {
        "no capability": ("Read", spot.secret, b""),
        "forged (wrong key)": ("Read", spot.secret, forged),
        "garbage": ("Read", spot.secret, os.urandom(54)),
        "expired": ("Read", spot.secret, _signed_with_cluster_key(c, spot.secret, 1, now_ms - 1)),
        "other inode (alice's)": ("Read", spot.secret, spot.alice_read.blob),
        "read-only cap for write": ("Write", spot.alice_file, spot.alice_read.blob),
        "write, no capability": ("Write", spot.secret, b""),
        "write, forged": ("Write", spot.secret, forged),
        "write, other inode": ("Write", spot.secret, spot.alice_read.blob),
    }


def test_raw_grpc_and_bulk_refuse_bad_capabilities(cluster: LocalCluster) -> None:
    async def check() -> dict[str, dict[str, str]]:
        spot = Spot(cluster)
        await spot.load()
        table: dict[str, dict[str, str]] = {}
        md = bearer_metadata(TOKENS["alice"])
        pool = BulkPool(token=TOKENS["alice"].encode())
        async with grpc.aio.insecure_channel(spot.grpc_address, options=channel_options()) as channel:
            stub = storage_pb2_grpc.StorageStub(channel)
            for case, (method, inode, cap) in _bad_capabilities(cluster, spot).items():
                request = spot.read(inode, cap) if method == "Read" else spot.write(inode, cap)
                row = table[case] = {}
                try:
                    await getattr(stub, method)(request, metadata=md)
                    row["gRPC"] = OK
                except grpc.aio.AioRpcError as exc:
                    row["gRPC"] = exc.code().name
                    assert "refused" in (exc.details() or ""), exc.details()
                try:
                    await pool.call(spot.bulk_address, method, request, timeout=10)
                    row["bulk"] = OK
                except errors.EmberError as exc:
                    row["bulk"] = DENIED if isinstance(exc, errors.PermissionDenied) else exc.code
                    assert isinstance(exc, errors.CapabilityRefused), exc
            connection = pool._connections[spot.bulk_address][0]
            # The same channel and bulk connection still serve a good capability.
            good = spot.read(spot.alice_file, spot.alice_read.blob)
            assert (await stub.Read(good, metadata=md)).exists
            assert (await pool.call(spot.bulk_address, "Read", good, timeout=10)).exists
            assert pool._connections[spot.bulk_address][0] is connection and not connection.closed
        await pool.close()
        return table

    table = _run(check())
    print("\nraw data-path requests with alice's token (case -> gRPC, bulk):")
    for case, row in table.items():
        print(f"  {case:26} {row['gRPC']:20} {row['bulk']}")
    assert all(row == {"gRPC": DENIED, "bulk": DENIED} for row in table.values()), table
    _run(_secret_unchanged(cluster))


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        got = sock.recv(n - len(data))
        assert got, "the server closed the connection"
        data += got
    return data


def test_raw_bulk_frames_on_one_socket(cluster: LocalCluster) -> None:
    """Hand-made frames on one TCP connection: a forged capability, an ext whose
    capability length lies, a read-only capability on a WRITE, each get their own error
    frame; the same connection then serves a good READ, and the WRITE left no trace."""
    spot = Spot(cluster)
    _run(spot.load())
    host, _, port = spot.bulk_address.rpartition(":")

    async def first_bytes() -> bytes:
        async with Client(cluster.meta_address, token=TOKENS["alice"]) as alice:
            return await alice.read_range("/open/alice", 0, 17)

    before = _run(first_bytes())
    now_ms = int(time.time() * 1000)
    forged = capability.sign(1, b"not the cluster key, 32 bytes!!!", spot.alice_file, 1, now_ms + 60_000)
    header = common_pb2.RequestHeader(client_id="raw", request_id=1).SerializeToString()
    data = b"RAW WRITE"

    def read_head(request_id: int) -> w.Request:
        return w.Request(w.OP_READ, request_id, chain_id=spot.chain.chain_id, chain_version=spot.chain.chain_version,
                         inode_id=spot.alice_file, chunk_index=0, offset=0, length=17, target_id=spot.head)

    write = w.Request(w.OP_WRITE, 3, kind=storage_pb2.WRITE, chain_id=spot.chain.chain_id,
                      chain_version=spot.chain.chain_version, inode_id=spot.alice_file, chunk_index=0,
                      crc32c=crc32c.crc32c(data), length=len(data), chunk_size=CHUNK, payload_length=len(data))
    frames = [(read_head(1), w.pack_client_ext(forged), b""),
              (read_head(2), b"\x40\x00" + b"short", b""),  # announces 64 capability bytes, has 5
              (write, w.pack_client_ext(spot.alice_read.blob, header), data),
              (read_head(4), w.pack_client_ext(spot.alice_read.blob), b"")]
    answers: dict[int, tuple[w.Response, bytes, bytes]] = {}
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(w.pack_hello(w.VERSION, 0, TOKENS["alice"].encode()))
        hello = w.unpack_hello(_exactly(sock, w.HELLO.size), max_body=w.MAX_EXT)
        _exactly(sock, hello.body_length)
        assert hello.field == w.STATUS_OK
        for head, ext, payload in frames:
            head.ext_length = len(ext)
            sock.sendall(w.pack_request(head) + ext + payload)
        while len(answers) < len(frames):
            reply = w.unpack_response(_exactly(sock, w.RESPONSE.size))
            answers[reply.request_id] = (reply, _exactly(sock, reply.ext_length), _exactly(sock, reply.payload_length))
    codes = {i: w.decode_error(ext)[0] if r.status == w.STATUS_ERROR else OK for i, (r, ext, _) in answers.items()}
    assert codes == {1: "CapabilityRefused", 2: "InvalidArgument", 3: "CapabilityRefused", 4: OK}, codes
    assert answers[4][2] == before and not before.startswith(data)  # the refused WRITE changed nothing


def test_raw_readv_frames_need_a_capability_for_their_inode(cluster: LocalCluster) -> None:
    """READV (many pieces of one inode, one frame) is checked once per frame like a READ:
    no, forged, expired or another inode's capability gets CapabilityRefused and no byte
    of any piece; the same connection then serves alice's READV of her own file."""
    spot = Spot(cluster)
    _run(spot.load())
    host, _, port = spot.bulk_address.rpartition(":")

    async def first_bytes() -> bytes:
        async with Client(cluster.meta_address, token=TOKENS["alice"]) as alice:
            return await alice.read_range("/open/alice", 0, 100)

    before = _run(first_bytes())
    now_ms = int(time.time() * 1000)
    cases = {
        "no capability": (spot.secret, b""),
        "forged": (spot.secret, capability.sign(1, b"not the cluster key, 32 bytes!!!", spot.secret, 1,
                                                now_ms + 60_000)),
        "expired": (spot.secret, _signed_with_cluster_key(cluster, spot.secret, 1, now_ms - 1)),
        "other inode (alice's)": (spot.secret, spot.alice_read.blob),
        "good": (spot.alice_file, spot.alice_read.blob),
    }
    pieces = w.pack_readv_reads([(0, 0, 10), (0, 10, 90), (1, 0, 10)])
    answers = {}
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(w.pack_hello(w.VERSION, 0, TOKENS["alice"].encode()))
        hello = w.unpack_hello(_exactly(sock, w.HELLO.size), max_body=w.MAX_EXT)
        _exactly(sock, hello.body_length)
        assert hello.field == w.STATUS_OK
        for request_id, (case, (inode, cap)) in enumerate(cases.items(), start=1):
            ext = w.pack_client_ext(cap)
            head = w.Request(w.OP_READV, request_id, chain_id=spot.chain.chain_id,
                             chain_version=spot.chain.chain_version, inode_id=inode, target_id=spot.head,
                             ext_length=len(ext), payload_length=len(pieces))
            sock.sendall(w.pack_request(head) + ext + pieces)
            reply = w.unpack_response(_exactly(sock, w.RESPONSE.size))
            assert reply.request_id == request_id
            ext_back, payload = _exactly(sock, reply.ext_length), _exactly(sock, reply.payload_length)
            answers[case] = (w.decode_error(ext_back)[0] if reply.status == w.STATUS_ERROR else OK, payload)
    print("\nraw READV frames with alice's token:", {case: code for case, (code, _) in answers.items()})
    assert {case: code for case, (code, _) in answers.items()} == {
        **{case: "CapabilityRefused" for case in cases if case != "good"}, "good": OK}
    assert all(payload == b"" for code, payload in answers.values() if code != OK)
    results = w.unpack_readv_results(answers["good"][1], 3)
    assert [bytes(r.data) for r in results[:2]] == [before[:10], before[10:100]]


def test_raw_readvm_frames_check_each_inodes_capability_and_refuse_only_its_pieces(cluster: LocalCluster) -> None:
    """READVM (pieces of many inodes, one frame) carries a capability per inode and the
    server checks each once: the pieces of the secret file, whose capability is missing,
    forged, expired or alice's, fail with CapabilityRefused and carry no byte; alice's
    pieces in the same frame are served."""
    spot = Spot(cluster)
    _run(spot.load())
    host, _, port = spot.bulk_address.rpartition(":")

    async def first_bytes() -> bytes:
        async with Client(cluster.meta_address, token=TOKENS["alice"]) as alice:
            return await alice.read_range("/open/alice", 0, 100)

    before = _run(first_bytes())
    now_ms = int(time.time() * 1000)
    secret_caps = {
        "no capability": b"",
        "forged": capability.sign(1, b"not the cluster key, 32 bytes!!!", spot.secret, 1, now_ms + 60_000),
        "expired": _signed_with_cluster_key(cluster, spot.secret, 1, now_ms - 1),
        "other inode (alice's)": spot.alice_read.blob,
    }
    # file 0: the secret file, file 1: alice's; pieces of both, interleaved
    pieces = w.pack_readvm_reads([(0, 0, 0, 10), (1, 0, 0, 10), (0, 0, 10, 90), (1, 0, 10, 90)])
    answers = {}
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(w.pack_hello(w.VERSION, 0, TOKENS["alice"].encode()))
        hello = w.unpack_hello(_exactly(sock, w.HELLO.size), max_body=w.MAX_EXT)
        _exactly(sock, hello.body_length)
        assert hello.field == w.STATUS_OK
        for request_id, (case, cap) in enumerate(secret_caps.items(), start=1):
            ext = w.pack_readv_files([(spot.secret, cap), (spot.alice_file, spot.alice_read.blob)])
            head = w.Request(w.OP_READVM, request_id, chain_id=spot.chain.chain_id,
                             chain_version=spot.chain.chain_version, target_id=spot.head,
                             ext_length=len(ext), payload_length=len(pieces))
            sock.sendall(w.pack_request(head) + ext + pieces)
            reply = w.unpack_response(_exactly(sock, w.RESPONSE.size))
            assert (reply.request_id, reply.status) == (request_id, w.STATUS_OK)
            _exactly(sock, reply.ext_length)
            answers[case] = w.unpack_readv_results(_exactly(sock, reply.payload_length), 4)
    for case, results in answers.items():
        secret, mine = results[0::2], results[1::2]
        assert [w.decode_error(r.error)[0] for r in secret] == ["CapabilityRefused"] * 2, case
        assert all(len(r.data) == 0 for r in secret), case
        assert [bytes(r.data) for r in mine] == [before[:10], before[10:100]], case


def test_a_good_capability_reads_and_writes(cluster: LocalCluster) -> None:
    """The other side of the table: alice's own capabilities work raw, on both transports."""

    async def check() -> None:
        spot = Spot(cluster)
        await spot.load()
        writable = await open_capability(cluster, "alice", "/open/alice", write=True)
        assert writable.rights == capability.RIGHT_READ | capability.RIGHT_WRITE
        pool = BulkPool(token=TOKENS["alice"].encode())
        try:
            await pool.call(spot.bulk_address, "Write", spot.write(spot.alice_file, writable.blob, b"ALICE"),
                            timeout=10)
            reply = await pool.call(spot.bulk_address, "Read", spot.read(spot.alice_file, writable.blob), timeout=10)
            assert bytes(reply.data[:5]) == b"ALICE"
        finally:
            await pool.close()

    _run(check())


# -- revocation by chmod ---------------------------------------------------------------------


def test_chmod_revokes_within_the_ttl(cluster: LocalCluster) -> None:
    async def check() -> None:
        address = cluster.meta_address
        async with Client(address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
            await root.write_file("/shared", b"shared bytes " * 1000, mode=0o644)
            async with Client(address, token=TOKENS["alice"]) as alice:
                f = await alice.open("/shared", "rb")
                assert await f.pread(0, 6) == b"shared"
                old = await open_capability(cluster, "alice", "/shared", write=False)
                await root.chmod("/shared", 0o600)
                # At once: a new open is refused by the metaserver (close-to-open; reads by
                # path may reuse the open's answer for attr_timeout, test_attrcache.py)...
                with pytest.raises(PermissionError):
                    await alice.open("/shared", "rb")
                # ...and the open file keeps reading only until its capability is due.
                chmod_at = time.monotonic()
                with pytest.raises(PermissionError):
                    while True:
                        await f.pread(0, 6)
                        assert time.monotonic() - chmod_at < TTL_S + 1.5, "still readable past the TTL"
                        await asyncio.sleep(0.1)
                await f.close()
                # The storage servers themselves refuse the old capability once it expired.
                spot = Spot(cluster)
                await spot.load()
                inode = capability.decode(old.blob).inode_id
                await asyncio.sleep(max(0.0, capability.decode(old.blob).expires_ms / 1000 - time.time()) + 0.05)
                async with grpc.aio.insecure_channel(spot.grpc_address, options=channel_options()) as channel:
                    layout = (await root._file("/shared"))[1]
                    chain = spot.view.chain(layout.chain_of(0))
                    request = storage_pb2.ReadRequest(
                        header=common_pb2.RequestHeader(), chain_id=chain.chain_id, chain_version=chain.chain_version,
                        chunk=storage_pb2.ChunkId(inode_id=inode, chunk_index=0), offset=0, length=6,
                        target_id=chain.targets[0].target_id, capability=old.blob)
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await storage_pb2_grpc.StorageStub(channel).Read(request, metadata=bearer_metadata(
                            TOKENS["alice"]))
                    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert "expired" in (info.value.details() or "")

    _run(check())


# -- fuzzing capability bytes ----------------------------------------------------------------


def _mutations() -> st.SearchStrategy[Any]:
    """Raw bytes, or a recipe applied to a valid capability in the test (bit flips,
    cuts, extensions, its rights widened)."""
    return st.one_of(
        st.binary(max_size=200),
        st.binary(min_size=54, max_size=54),
        st.tuples(st.just("flip"), st.integers(0, 53), st.integers(0, 7)),
        st.tuples(st.just("cut"), st.integers(0, 53)),
        st.tuples(st.just("extend"), st.binary(min_size=1, max_size=8)),
        st.just("widen"),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=_mutations(), op=st.sampled_from(["gRPC Read", "gRPC Write", "bulk Read", "bulk Write"]))
def test_fuzz_capability_bytes(cluster: LocalCluster, fuzz_state: dict[str, Any], shape: Any, op: str) -> None:
    spot, valid = fuzz_state["spot"], fuzz_state["valid"]
    if shape == "widen":
        blob = _flip_rights(valid)  # its rights turned to write: the MAC no longer matches
    elif isinstance(shape, tuple) and shape[0] == "flip":
        at = shape[1] % len(valid)
        blob = valid[:at] + bytes([valid[at] ^ (1 << shape[2])]) + valid[at + 1:]
    elif isinstance(shape, tuple) and shape[0] == "cut":
        blob = valid[:shape[1]]
    elif isinstance(shape, tuple) and shape[0] == "extend":
        blob = valid + shape[1]
    else:
        blob = shape
    assert blob != valid

    async def attempt() -> None:
        transport, method = op.split()
        request = spot.read(spot.secret, blob) if method == "Read" else spot.write(spot.secret, blob)
        if transport == "gRPC":
            async with grpc.aio.insecure_channel(spot.grpc_address, options=channel_options()) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await getattr(storage_pb2_grpc.StorageStub(channel), method)(
                        request, metadata=bearer_metadata(TOKENS["alice"]))
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value
        else:
            pool = BulkPool(token=TOKENS["alice"].encode())
            try:
                with pytest.raises(errors.CapabilityRefused):
                    await pool.call(spot.bulk_address, method, request, timeout=10)
            finally:
                await pool.close()

    _run(attempt())


def _flip_rights(blob: bytes) -> bytes:
    return blob[:13] + bytes([blob[13] | capability.RIGHT_WRITE]) + blob[14:]


@pytest.fixture(scope="module")
def fuzz_state(cluster: LocalCluster) -> Iterator[dict[str, Any]]:
    async def load() -> dict[str, Any]:
        spot = Spot(cluster)
        await spot.load()
        # A valid read capability for /secret, signed as the metaserver would (the test
        # holds the key file); every fuzzed variant of it must fail.
        valid = _signed_with_cluster_key(cluster, spot.secret, capability.RIGHT_READ, int(time.time() * 1000) + 600_000)
        return {"spot": spot, "valid": valid}

    state = _run(load())
    yield state
    assert all(p.running for _, p in cluster.processes()), "a server died under the fuzzing"
    _run(_secret_unchanged(cluster))


# -- key rotation (last: it changes the cluster's keys) ----------------------------------------


def test_key_rotation_without_restart(cluster: LocalCluster) -> None:
    keys_file = cluster.keys_file
    assert keys_file is not None

    async def open_secret_cap() -> bytes:
        return (await open_capability(cluster, "admin", "/secret", write=False)).blob

    async def read_raw(spot: Spot, blob: bytes) -> str:
        async with grpc.aio.insecure_channel(spot.grpc_address, options=channel_options()) as channel:
            try:
                await storage_pb2_grpc.StorageStub(channel).Read(spot.read(spot.secret, blob),
                                                                 metadata=bearer_metadata(TOKENS["admin"]))
                return OK
            except grpc.aio.AioRpcError as exc:
                return f"{exc.code().name}: {exc.details()}"

    async def wait_for(what: str, probe: Callable[[], Awaitable[bool]]) -> float:
        start = time.monotonic()
        while not await probe():
            assert time.monotonic() - start < 10, f"not seen within 10 s: {what}"
            await asyncio.sleep(0.1)
        return time.monotonic() - start

    async def check() -> None:
        spot = Spot(cluster)
        await spot.load()
        old = await open_secret_cap()
        assert capability.decode(old).key_id == 1
        async with Client(cluster.meta_address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
            held = await root.open("/secret", "rb")  # holds a key-1 capability throughout
            assert await held.pread(0, 4) == SECRET[:4]

            # 1. Roll: key 2 signs; key 1 still verifies. The metaserver is told by SIGHUP,
            #    the storage servers notice the file's mtime on their own.
            assert capkeys.rotate(keys_file) == 2
            meta_pid = cluster.meta.pid
            assert meta_pid is not None
            os.kill(meta_pid, signal.SIGHUP)
            took = await wait_for("the metaserver signing with key 2",
                                  lambda: _key_id_is(open_secret_cap(), 2))
            new = await open_secret_cap()
            await wait_for("storage verifying key 2", lambda: _ok(read_raw(spot, new)))
            assert await read_raw(spot, old) == OK, "a key-1 capability must verify during the roll"
            assert await held.pread(0, 4) == SECRET[:4]
            print(f"\nrotation: metaserver signs with key 2 after {took:.2f} s; key-1 capabilities still verify")

            # 2. Retire key 1: old capabilities are refused, new ones work, and the open
            #    file renews its capability transparently.
            assert capkeys.retire(keys_file) == [1]
            await wait_for("storage refusing key 1", lambda: _refused(read_raw(spot, old)))
            refusal = await read_raw(spot, old)
            assert "key 1" in refusal, refusal
            assert await read_raw(spot, new) == OK
            assert await held.pread(0, 4) == SECRET[:4]  # refused once, renewed, read
            await held.close()
            print(f"rotation: after retiring key 1, an old capability gets {refusal!r}")

    _run(check())


async def _key_id_is(blob: Awaitable[bytes], key_id: int) -> bool:
    return capability.decode(await blob).key_id == key_id


async def _ok(outcome: Awaitable[str]) -> bool:
    return await outcome == OK


async def _refused(outcome: Awaitable[str]) -> bool:
    return (await outcome).startswith(DENIED)

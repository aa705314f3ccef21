"""TLS (issue 9, part 2) against a real cluster on 127.0.0.1 started with generated
certificates and tokens (LocalCluster(tls=True, auth=True)).

- data through Client(tls_ca=...) on both transports (chain forwarding between storage
  servers goes over TLS too, and the cluster only started because registration and
  heartbeats did);
- a plaintext client, gRPC or bulk, against TLS servers fails UNAVAILABLE in bounded time;
- a client trusting another CA fails clearly (certificate verification), on both transports;
- the metaserver's GC reaches storage servers over TLS; the CLI's --tls-ca; a SyncClient
  pickles its CA path;
- `emberfs admin gen-certs` writes files ssl can load (keys 0600, the asked-for names);
- bad TLS files stop emberfs-meta and emberfs-storage with exit 1;
- `emberfs local-cluster --tls`.

Run: python -m pytest tests/integration/test_tls.py -q -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import json
import pickle
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberfs.client import Client, SyncClient
from emberfs.client._launch import USER_TOKEN_FILE, LocalCluster
from emberfs.client.cli import main as cli_main
from emberfs.common import errors
from emberfs.common.authgrpc import bearer_metadata, open_channel
from emberfs.common.bulkclient import BulkPool
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.common.tls import gen_certs
from emberfs.proto import common_pb2, storage_pb2, storage_pb2_grpc

PAYLOAD = bytes(range(256)) * 1000  # several 64 KiB chunks, forwarded along the chain
REFUSAL_BOUND_S = 10.0

# gen_certs runs the openssl command (common/tls.py)
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("tls")
    cluster = LocalCluster(base / "cluster", nodes=2, replicas=2, chunk_size=64 * 1024, auth=True, tls=True,
                           heartbeat_timeout=15.0)
    cluster.start(timeout=60.0)
    try:
        async def open_root() -> None:
            # The generated user token is not root (uid 1000 when the tests run as root);
            # these tests write at the top level as that user, so the root is made a /tmp.
            async with Client(cluster.meta_address, token=cluster.admin_token, tls_ca=str(cluster.tls_ca), uid=0,
                              gid=0, groups=[]) as root:
                await root.chmod("/", 0o1777)

        _run(open_root())
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def user_token(tls_cluster: LocalCluster) -> str:
    return (tls_cluster.data_dir / USER_TOKEN_FILE).read_text().strip()


@pytest.fixture(scope="module")
def server_token(tls_cluster: LocalCluster) -> str:
    """Reads chunks of any replica without a capability (as the storage servers do)."""
    assert tls_cluster.tokens_file is not None
    entries = json.loads(tls_cluster.tokens_file.read_text())["tokens"]
    return str(next(entry["token"] for entry in entries if entry.get("server")))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(gen_certs(tmp_path_factory.mktemp("other-ca"))["ca"])


def _ca(cluster: LocalCluster) -> str:
    assert cluster.tls_ca is not None
    return str(cluster.tls_ca)


async def _bulk_address(cluster: LocalCluster, token: str) -> str:
    async with Client(cluster.meta_address, token=token, tls_ca=_ca(cluster)) as fs:
        routing = await fs.routing()
    return next(node.bulk_address for node in routing.nodes if node.bulk_address)


def test_data_on_both_transports(tls_cluster: LocalCluster, user_token: str) -> None:
    async def check() -> None:
        for transport in ("bulk", "grpc"):
            async with Client(tls_cluster.meta_address, token=user_token, tls_ca=_ca(tls_cluster),
                              transport=transport) as fs:
                await fs.write_file(f"/data-{transport}", PAYLOAD)
                assert await fs.read_file(f"/data-{transport}") == PAYLOAD
                # A batch of samples: READVs on the bulk channel, with capabilities, over TLS.
                ranges = [(f"/data-{transport}", offset, 3000) for offset in range(0, len(PAYLOAD), 7001)]
                assert await fs.read_ranges(ranges) == [PAYLOAD[o:o + n] for _, o, n in ranges]
        # Each transport reads what the other wrote.
        async with Client(tls_cluster.meta_address, token=user_token, tls_ca=_ca(tls_cluster),
                          transport="grpc") as fs:
            assert await fs.read_file("/data-bulk") == PAYLOAD

    _run(check())


def test_plaintext_client_fails_unavailable_in_bounded_time(tls_cluster: LocalCluster, user_token: str) -> None:
    async def check() -> None:
        started = time.monotonic()
        async with Client(tls_cluster.meta_address, token=user_token, timeout=2.0) as plain:
            with pytest.raises(ConnectionError, match="unavailable"):
                await plain.stat("/")
        assert time.monotonic() - started < REFUSAL_BOUND_S
        async with grpc.aio.insecure_channel(tls_cluster.meta_address, options=channel_options()) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3.0)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        started = time.monotonic()
        await _bulk_read_refused(tls_cluster, user_token, None, None)
        assert time.monotonic() - started < REFUSAL_BOUND_S

    _run(check())


async def _bulk_read_refused(cluster: LocalCluster, token: str, tls_ca: str | None, match: str | None) -> None:
    """A bulk READ from a client with this CA (None: plaintext) fails Unavailable."""
    bulk = BulkPool(token=token.encode(), tls_ca=tls_ca)
    try:
        with pytest.raises(errors.Unavailable, match=match):
            await bulk.call(await _bulk_address(cluster, token), "Read",
                            storage_pb2.ReadRequest(header=common_pb2.RequestHeader(), chain_id=1,
                                                    chunk=storage_pb2.ChunkId(inode_id=1), length=1),
                            timeout=3.0)
    finally:
        await bulk.close()


def test_wrong_ca_fails_clearly(tls_cluster: LocalCluster, user_token: str, other_ca: str) -> None:
    async def check() -> None:
        started = time.monotonic()
        async with Client(tls_cluster.meta_address, token=user_token, tls_ca=other_ca, timeout=2.0) as fs:
            with pytest.raises(ConnectionError, match="(?i)handshake|certificate"):
                await fs.stat("/")
        assert time.monotonic() - started < REFUSAL_BOUND_S
        await _bulk_read_refused(tls_cluster, user_token, other_ca, "certificate verify failed")

    _run(check())


def test_missing_ca_file_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TLS CA file"):
        Client("127.0.0.1:1", tls_ca=str(tmp_path / "absent.pem"))


def test_gc_removes_chunks_over_tls(tls_cluster: LocalCluster, user_token: str, server_token: str) -> None:
    """RemoveChunks goes from the metaserver's GC to the storage servers over TLS."""
    ca = _ca(tls_cluster)

    async def chunks_on_targets(fs: Client, inode_id: int) -> list[bool]:
        routing = await fs.routing()
        view = RoutingView(routing)
        found = []
        for target in routing.targets:
            chain = view.chain(target.chain_id)
            channel = open_channel(view.address_of(target.target_id), server_token, ca)
            try:
                reply = await storage_pb2_grpc.StorageStub(channel).Read(storage_pb2.ReadRequest(
                    header=common_pb2.RequestHeader(), chain_id=chain.chain_id, chain_version=chain.chain_version,
                    chunk=storage_pb2.ChunkId(inode_id=inode_id, chunk_index=0), offset=0, length=16,
                    target_id=target.target_id), metadata=bearer_metadata(server_token), timeout=5.0)
            finally:
                await channel.close()
            found.append(reply.exists)
        return found

    async def check() -> None:
        async with Client(tls_cluster.meta_address, token=user_token, tls_ca=ca) as fs:
            await fs.write_file("/doomed", b"d" * 100_000)
            inode_id = (await fs.stat("/doomed")).st_ino
            assert all(await chunks_on_targets(fs, inode_id))
            await fs.remove("/doomed")
            deadline = time.monotonic() + 20
            while any(await chunks_on_targets(fs, inode_id)):
                assert time.monotonic() < deadline, "the GC did not remove the chunks over TLS"
                await asyncio.sleep(0.2)

    _run(check())


def test_cli_tls_ca(tls_cluster: LocalCluster, user_token: str, other_ca: str, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBERFS_TLS_CA", raising=False)
    token_file = tmp_path / "user.token"
    token_file.write_text(user_token)
    meta = ["--meta", tls_cluster.meta_address, "--timeout", "3", "--token-file", str(token_file)]
    assert cli_main([*meta, "--tls-ca", _ca(tls_cluster), "mkdir", "-p", "/cli-dir"]) == 0
    assert cli_main([*meta, "--tls-ca", _ca(tls_cluster), "ls", "/"]) == 0
    assert "cli-dir" in capsys.readouterr().out
    assert cli_main([*meta, "ls", "/"]) != 0  # plaintext against TLS
    assert "cannot reach the metaserver" in capsys.readouterr().err
    monkeypatch.setenv("EMBERFS_TLS_CA", _ca(tls_cluster))
    assert cli_main([*meta, "ls", "/"]) == 0
    assert "cli-dir" in capsys.readouterr().out
    assert cli_main([*meta, "--tls-ca", str(tmp_path / "absent.pem"), "ls", "/"]) == 2
    assert "TLS CA file" in capsys.readouterr().err


def test_sync_client_pickles_its_ca_path(tls_cluster: LocalCluster, user_token: str) -> None:
    fs = SyncClient(tls_cluster.meta_address, token=user_token, tls_ca=_ca(tls_cluster))
    try:
        fs.write_file("/sync", PAYLOAD)
        copy = pickle.loads(pickle.dumps(fs))
        try:
            assert copy.read_file("/sync") == PAYLOAD
        finally:
            copy.close()
    finally:
        fs.close()


def test_gen_certs_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert cli_main(["admin", "gen-certs", str(out), "--hosts", "meta,storage1,storage2,storage3,10.1.2.3"]) == 0
    assert "--tls-ca" in capsys.readouterr().out
    for name, mode in (("ca.pem", 0o644), ("ca.key", 0o600), ("server.pem", 0o644), ("server.key", 0o600)):
        assert (out / name).stat().st_mode & 0o777 == mode, name
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(out / "server.pem", out / "server.key")
    client = ssl.create_default_context(cafile=str(out / "ca.pem"))
    assert client.get_ca_certs()
    sans = ssl._ssl._test_decode_cert(str(out / "server.pem"))["subjectAltName"]  # type: ignore[attr-defined]
    for expected in (("DNS", "localhost"), ("IP Address", "127.0.0.1"), ("DNS", "meta"), ("DNS", "storage3"),
                     ("IP Address", "10.1.2.3")):
        assert expected in sans, sans
    assert cli_main(["admin", "gen-certs"]) == 2


@pytest.mark.parametrize("program", ["emberfs.metaserver", "emberfs.storage"])
def test_bad_tls_files_exit_1(program: str, tmp_path: Path) -> None:
    certs = gen_certs(tmp_path / "certs")
    argv = [sys.executable, "-m", program, "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"]
    if program == "emberfs.storage":
        argv += ["--meta", "127.0.0.1:1", "--node-id", "1"]
    cases = {
        "missing cert": ["--tls-cert", str(tmp_path / "absent.pem"), "--tls-key", str(certs["key"])],
        "cert without key": ["--tls-cert", str(certs["cert"])],
        "key of another cert": ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["ca_key"])],
        "missing ca": ["--tls-ca", str(tmp_path / "absent-ca.pem")],
    }
    procs = {case: subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for case, extra in cases.items()}
    for case, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (case, out, err)
        assert out == ""
        assert "TLS" in err or "tls" in err, (case, err)


def test_local_cluster_tls_subprocess(local_cluster_cli: Any) -> None:
    """`emberfs local-cluster --tls`: certificates made in DATA_DIR/tls, every server on
    TLS, and stderr names the CA clients pass."""
    data_dir = local_cluster_cli.data_dir
    meta = local_cluster_cli.start("--tls")
    ca = data_dir / "tls" / "ca.pem"
    assert (data_dir / "tls" / "server.key").stat().st_mode & 0o777 == 0o600

    async def io() -> None:
        async with Client(meta, tls_ca=str(ca)) as fs:
            await fs.write_file("/f", PAYLOAD)
            assert await fs.read_file("/f") == PAYLOAD

    _run(io())
    assert f"--tls-ca {ca}" in local_cluster_cli.stop()

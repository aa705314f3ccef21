"""Tokens (issue 9, part 1) against a real cluster on 127.0.0.1 started with a tokens file.

- the refusal table: each service (Meta, Mgmt, Storage gRPC, the bulk channel, grpc
  health) x each credential (none, wrong, user, admin, server) gives the expected
  UNAUTHENTICATED / PERMISSION_DENIED / OK; the table is printed (`pytest -s`);
- identity: a user token's uid, never the header's; an admin token acts as the header's;
- the client's token=, EMBERFS_TOKEN and `--token-file`; data on both transports;
- the metaserver's chunk GC reaches storage servers with its server token;
- a bad tokens file stops emberfs-meta and emberfs-storage with exit 1 and a clear
  message that quotes no token.

The data path's own refusal table (capabilities: every read and write API, raw frames
with bad capabilities, revocation, key rotation, fuzzing) is in test_auth_datapath.py.

Run: python -m pytest tests/integration/test_auth.py -q -s -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import crc32c
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberfs.client import Client
from emberfs.client._launch import LocalCluster
from emberfs.client.cli import main as cli_main
from emberfs.common import errors
from emberfs.common.authgrpc import bearer_metadata
from emberfs.common.bulkclient import BulkPool
from emberfs.common.routing import RoutingView
from emberfs.common.rpc import channel_options
from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc, mgmt_pb2, mgmt_pb2_grpc, storage_pb2, storage_pb2_grpc

TOKENS = {
    "user": "user-token-alice-0123456789abcdef",
    "admin": "admin-token-ops-0123456789abcdef",
    "server": "server-token-storage-0123456789ab",
}
CREDENTIALS = {"none": None, "wrong": "not-a-token-of-this-cluster-000000", **TOKENS}
USER_UID = 1000

UNAUTH, DENIED, OK = "UNAUTHENTICATED", "PERMISSION_DENIED", "OK"


def _tokens_document() -> dict[str, Any]:
    return {"tokens": [
        {"name": "alice", "token": TOKENS["user"], "uid": USER_UID, "gid": USER_UID, "groups": [100]},
        {"name": "ops", "token": TOKENS["admin"], "admin": True},
        {"name": "storage", "token": TOKENS["server"], "server": True},
    ]}


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("auth")
    tokens_file = base / "tokens.json"
    tokens_file.write_text(json.dumps(_tokens_document()))
    tokens_file.chmod(0o600)
    cluster = LocalCluster(base / "cluster", nodes=2, replicas=2, chunk_size=64 * 1024, tokens_file=tokens_file,
                           heartbeat_timeout=15.0)
    cluster.start(timeout=60.0)
    try:
        async def shared_dir() -> None:  # where the user token may create files
            async with Client(cluster.meta_address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
                await root.makedirs("/open", exist_ok=True)
                await root.chmod("/open", 0o1777)

        _run(shared_dir())
        yield cluster
    finally:
        cluster.stop()


def _run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _outcome_of_rpc(exc: grpc.aio.AioRpcError | None) -> str:
    if exc is None:
        return OK
    if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return exc.code().name
    return f"past auth: {exc.code().name}"


def _outcome_of_ember(exc: errors.EmberError | None) -> str:
    if exc is None:
        return OK
    if isinstance(exc, errors.Unauthenticated):
        return UNAUTH
    if isinstance(exc, errors.PermissionDenied):
        return DENIED
    return f"past auth: {exc.code}"


# The expected table: call -> outcome per credential (none, wrong, user, admin, server).
EXPECTED: dict[str, tuple[str, ...]] = {
    "Meta.Stat": (UNAUTH, UNAUTH, OK, OK, DENIED),
    "Meta.Mkdir (in a 1777 dir)": (UNAUTH, UNAUTH, OK, OK, DENIED),
    "Mgmt.GetRouting": (UNAUTH, UNAUTH, OK, OK, OK),
    "Mgmt.InitChains": (UNAUTH, UNAUTH, DENIED, OK, DENIED),
    "Mgmt.SetTargetAdminState": (UNAUTH, UNAUTH, DENIED, OK, DENIED),
    "Mgmt.Heartbeat": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
    # Without a capability (none is sent here) a person's token reads and writes nothing;
    # a server token needs none (tests below: the data path's own refusal table).
    "Storage.Read": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
    "Storage.TargetStats": (UNAUTH, UNAUTH, OK, OK, OK),
    "Storage.RemoveChunks": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
    "Storage.GetCommitVersion": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
    "Storage.Forward": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
    "Health.Check (meta)": (OK, OK, OK, OK, OK),
    "Health.Check (storage)": (OK, OK, OK, OK, OK),
    "bulk hello + READ": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
    "bulk WRITE": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
    "bulk FORWARD": (UNAUTH, UNAUTH, DENIED, DENIED, OK),
}


async def _refusal_table(cluster: LocalCluster) -> dict[str, dict[str, str]]:
    meta_address = cluster.meta_address
    async with grpc.aio.insecure_channel(meta_address, options=channel_options()) as admin_channel:
        reply = await mgmt_pb2_grpc.MgmtStub(admin_channel).GetRouting(
            mgmt_pb2.GetRoutingRequest(header=common_pb2.RequestHeader()), metadata=bearer_metadata(TOKENS["admin"]))
    view = RoutingView(reply.routing)
    chain = view.chain(view.chain_ids()[0])
    head, tail = chain.targets[0].target_id, chain.targets[-1].target_id
    head_address, tail_address = view.address_of(head), view.address_of(tail)
    head_bulk, tail_bulk = view.bulk_address_of(head), view.bulk_address_of(tail)
    assert head_bulk and tail_bulk
    version = chain.chain_version
    target_ids = {t.target_id for t in reply.routing.targets}

    def header() -> common_pb2.RequestHeader:
        return common_pb2.RequestHeader(client_id="auth-test", request_id=int(time.monotonic_ns() % 2**62))

    def chunk(inode: int) -> storage_pb2.ChunkId:
        return storage_pb2.ChunkId(inode_id=inode, chunk_index=0)

    def update(inode: int, data: bytes) -> storage_pb2.WriteRequest:
        return storage_pb2.WriteRequest(header=header(), chain_id=chain.chain_id, chain_version=version,
                                        chunk=chunk(inode), kind=storage_pb2.WRITE, offset=0, data=data,
                                        crc32c=crc32c.crc32c(data), chunk_size=64 * 1024)

    table: dict[str, dict[str, str]] = {name: {} for name in EXPECTED}
    channels = {address: grpc.aio.insecure_channel(address, options=channel_options())
                for address in {meta_address, head_address, tail_address}}
    try:
        meta = meta_pb2_grpc.MetaStub(channels[meta_address])
        mgmt = mgmt_pb2_grpc.MgmtStub(channels[meta_address])
        head_storage = storage_pb2_grpc.StorageStub(channels[head_address])
        tail_storage = storage_pb2_grpc.StorageStub(channels[tail_address])
        # One column's calls, built by functions so that each lambda holds that column's
        # credential, metadata, scratch inode and pool (not the loop's latest).
        def rpc_calls(credential: str, md: Any, inode: int) -> dict[str, Callable[[], Awaitable[Any]]]:
            return {
                "Meta.Stat": lambda: meta.Stat(meta_pb2.StatRequest(header=header(), path="/"), metadata=md),
                "Meta.Mkdir (in a 1777 dir)": lambda: meta.Mkdir(meta_pb2.MkdirRequest(
                    header=header(), path=f"/open/table-{credential}", mode=0o755, exist_ok=True), metadata=md),
                "Mgmt.GetRouting": lambda: mgmt.GetRouting(mgmt_pb2.GetRoutingRequest(header=header()), metadata=md),
                "Mgmt.InitChains": lambda: mgmt.InitChains(
                    mgmt_pb2.InitChainsRequest(header=header(), replicas=2), metadata=md),
                # Online an online target: a change request that changes nothing.
                "Mgmt.SetTargetAdminState": lambda: mgmt.SetTargetAdminState(
                    mgmt_pb2.SetTargetAdminStateRequest(header=header(), target_id=min(target_ids), offline=False),
                    metadata=md),
                # A node the manager does not know: answered "re-register", nothing changes.
                "Mgmt.Heartbeat": lambda: mgmt.Heartbeat(
                    mgmt_pb2.HeartbeatRequest(header=header(), node_id=4242), metadata=md),
                "Storage.Read": lambda: head_storage.Read(storage_pb2.ReadRequest(
                    header=header(), chain_id=chain.chain_id, chain_version=version, chunk=chunk(inode),
                    offset=0, length=4096, target_id=head), metadata=md),
                "Storage.TargetStats": lambda: head_storage.TargetStats(
                    storage_pb2.TargetStatsRequest(header=header()), metadata=md),
                "Storage.RemoveChunks": lambda: head_storage.RemoveChunks(storage_pb2.RemoveChunksRequest(
                    header=header(), chain_id=chain.chain_id, chain_version=version, inode_id=inode,
                    target_id=head), metadata=md),
                "Storage.GetCommitVersion": lambda: tail_storage.GetCommitVersion(
                    storage_pb2.GetCommitVersionRequest(header=header(), chain_id=chain.chain_id,
                                                        chain_version=version, chunk=chunk(inode)),
                    metadata=md),
                # What a head sends its successor for a chunk's first version.
                "Storage.Forward": lambda: tail_storage.Forward(storage_pb2.ForwardRequest(
                    update=update(inode, b"g" * 100), update_version=1, from_target=head, to_target=tail),
                    metadata=md),
                "Health.Check (meta)": lambda: health_pb2_grpc.HealthStub(channels[meta_address]).Check(
                    health_pb2.HealthCheckRequest(service=""), metadata=md),
                "Health.Check (storage)": lambda: health_pb2_grpc.HealthStub(channels[head_address]).Check(
                    health_pb2.HealthCheckRequest(service=""), metadata=md),
            }

        def bulk_calls(pool: BulkPool, inode: int) -> dict[str, Callable[[], Awaitable[Any]]]:
            return {
                "bulk hello + READ": lambda: pool.call(head_bulk, "Read", storage_pb2.ReadRequest(
                    chain_id=chain.chain_id, chain_version=version, chunk=chunk(inode | 1 << 20), offset=0,
                    length=4096, target_id=head), timeout=10),
                "bulk WRITE": lambda: pool.call(head_bulk, "Write", update(inode | 1 << 21, b"w" * 100), timeout=10),
                "bulk FORWARD": lambda: pool.call(tail_bulk, "Forward", storage_pb2.ForwardRequest(
                    update=update(inode | 1 << 22, b"f" * 100), update_version=1, from_target=head,
                    to_target=tail), timeout=10),
            }

        for column, (credential, token) in enumerate(CREDENTIALS.items()):
            md = bearer_metadata(token) if token else ()
            inode = 1 << 40 | column  # chunks of no file: nothing of the namespace is touched
            calls = rpc_calls(credential, md, inode)
            for name, call in calls.items():
                try:
                    await call()
                    table[name][credential] = OK
                except grpc.aio.AioRpcError as exc:
                    table[name][credential] = _outcome_of_rpc(exc)
            pool = BulkPool(token=token.encode() if token else b"")
            try:
                for name, call in bulk_calls(pool, inode).items():
                    try:
                        await call()
                        table[name][credential] = OK
                    except errors.EmberError as exc:
                        table[name][credential] = _outcome_of_ember(exc)
            finally:
                await pool.close()
    finally:
        for channel in channels.values():
            await channel.close()
    return table


def _format(table: dict[str, dict[str, str]]) -> str:
    columns = list(CREDENTIALS)
    width = max(len(name) for name in table) + 2
    lines = ["call".ljust(width) + "".join(c.ljust(19) for c in columns)]
    for name, row in table.items():
        lines.append(name.ljust(width) + "".join(row[c].ljust(19) for c in columns))
    return "\n".join(lines)


def test_refusal_table(auth_cluster: LocalCluster) -> None:
    table = _run(_refusal_table(auth_cluster))
    print("\nrefusal table (service call x credential):\n" + _format(table))
    expected = {name: dict(zip(CREDENTIALS, outcomes, strict=True)) for name, outcomes in EXPECTED.items()}
    assert table == expected


def test_refusals_say_why(auth_cluster: LocalCluster) -> None:
    async def check() -> None:
        async with Client(auth_cluster.meta_address, token=None) as nobody:
            with pytest.raises(PermissionError, match="missing or invalid token"):
                await nobody.stat("/")
        async with Client(auth_cluster.meta_address, token=TOKENS["user"]) as alice:
            with pytest.raises(PermissionError, match="needs a admin token; token 'alice' is a user token"):
                await alice.init_chains(2)

    _run(check())


def test_user_token_identity_wins_over_header(auth_cluster: LocalCluster) -> None:
    """uid 1000's token cannot chmod a root-owned file even when its header says uid 0;
    an admin token acts as the header's identity."""

    async def check() -> None:
        address = auth_cluster.meta_address
        async with Client(address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
            await root.makedirs("/ident", exist_ok=True)
            await root.chmod("/ident", 0o777)
            await root.write_file("/ident/root-file", b"root's")
            await root.chmod("/ident/root-file", 0o644)
            assert (await root.stat("/ident/root-file")).st_uid == 0
        async with Client(address, token=TOKENS["user"], uid=0, gid=0, groups=[0]) as alice_claims_root:
            with pytest.raises(PermissionError):
                await alice_claims_root.chmod("/ident/root-file", 0o666)
            with pytest.raises(PermissionError):
                await alice_claims_root.write_file("/ident/root-file", b"overwritten")
            await alice_claims_root.write_file("/ident/alice-file", b"alice's")
            made = await alice_claims_root.stat("/ident/alice-file")
            assert (made.st_uid, made.st_gid) == (USER_UID, USER_UID)  # the token's, not the header's 0
        async with Client(address, token=TOKENS["admin"], uid=1234, gid=1234, groups=[]) as admin_as_1234:
            await admin_as_1234.write_file("/ident/file-1234", b"x")
            assert (await admin_as_1234.stat("/ident/file-1234")).st_uid == 1234
            with pytest.raises(PermissionError):  # as uid 1234, not as root
                await admin_as_1234.chmod("/ident/root-file", 0o666)
        async with Client(address, token=TOKENS["admin"], uid=0, gid=0, groups=[]) as root:
            await root.chmod("/ident/root-file", 0o600)
            assert await root.read_file("/ident/root-file") == b"root's"

    _run(check())


def test_data_on_both_transports_and_env_token(auth_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes(range(256)) * 1000  # several 64 KiB chunks, forwarded along the chain

    async def check() -> None:
        for transport in ("bulk", "grpc"):
            async with Client(auth_cluster.meta_address, token=TOKENS["user"], transport=transport) as alice:
                await alice.write_file(f"/open/data-{transport}", payload)
                assert await alice.read_file(f"/open/data-{transport}") == payload
        monkeypatch.setenv("EMBERFS_TOKEN", TOKENS["user"])
        async with Client(auth_cluster.meta_address) as from_env:
            assert await from_env.read_file("/open/data-bulk") == payload
        monkeypatch.setenv("EMBERFS_TOKEN", CREDENTIALS["wrong"])
        async with Client(auth_cluster.meta_address) as wrong:
            with pytest.raises(PermissionError):
                await wrong.stat("/open/data-bulk")

    _run(check())


def test_cli_token_file(auth_cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBERFS_TOKEN", raising=False)
    token_file = tmp_path / "alice.token"
    token_file.write_text(TOKENS["user"] + "\n")
    meta = ["--meta", auth_cluster.meta_address, "--timeout", "10"]
    assert cli_main([*meta, "--token-file", str(token_file), "mkdir", "-p", "/open/cli-dir"]) == 0
    assert cli_main([*meta, "--token-file", str(token_file), "ls", "/open"]) == 0
    assert "cli-dir" in capsys.readouterr().out
    assert cli_main([*meta, "ls", "/"]) == 1
    assert "missing or invalid token" in capsys.readouterr().err
    assert cli_main([*meta, "--token-file", str(tmp_path / "absent"), "ls", "/"]) == 2
    assert "cannot read the token file" in capsys.readouterr().err


def test_gc_removes_chunks_with_the_server_token(auth_cluster: LocalCluster) -> None:
    """RemoveChunks is server-only: the metaserver's GC must present its server token."""

    async def chunks_on_targets(inode_id: int) -> list[bool]:
        async with Client(auth_cluster.meta_address, token=TOKENS["user"]) as alice:
            routing = await alice.routing()
        view = RoutingView(routing)
        found = []
        for target in routing.targets:
            address = view.address_of(target.target_id)
            chain = view.chain(target.chain_id)
            async with grpc.aio.insecure_channel(address, options=channel_options()) as channel:
                reply = await storage_pb2_grpc.StorageStub(channel).Read(storage_pb2.ReadRequest(
                    header=common_pb2.RequestHeader(), chain_id=chain.chain_id, chain_version=chain.chain_version,
                    chunk=storage_pb2.ChunkId(inode_id=inode_id, chunk_index=0), offset=0, length=16,
                    target_id=target.target_id), metadata=bearer_metadata(TOKENS["server"]))  # reads any replica
            found.append(reply.exists)
        return found

    async def check() -> None:
        async with Client(auth_cluster.meta_address, token=TOKENS["user"]) as alice:
            await alice.write_file("/open/doomed", b"d" * 100_000)
            inode_id = (await alice.stat("/open/doomed")).st_ino
            assert all(await chunks_on_targets(inode_id))
            await alice.remove("/open/doomed")
        deadline = time.monotonic() + 20
        while any(await chunks_on_targets(inode_id)):
            assert time.monotonic() < deadline, "the GC did not remove the chunks (refused without a server token?)"
            await asyncio.sleep(0.2)

    _run(check())


def test_resync_with_server_tokens(auth_cluster: LocalCluster, tmp_path: Path) -> None:
    """A target taken out and back (admin CLI) resyncs from its peer (SyncDump, Forward,
    SyncDone: server-only calls) and serves again, with the data written meanwhile."""
    from emberfs.client._admin import cluster_problems

    admin_file = tmp_path / "admin.token"
    admin_file.write_text(TOKENS["admin"])
    meta = ["--meta", auth_cluster.meta_address, "--timeout", "20", "--token-file", str(admin_file)]

    async def routing() -> Any:
        async with Client(auth_cluster.meta_address, token=TOKENS["user"]) as alice:
            return await alice.routing()

    async def write(path: str, data: bytes) -> None:
        async with Client(auth_cluster.meta_address, token=TOKENS["user"]) as alice:
            await alice.write_file(path, data)

    tail = _run(routing()).chains[0].targets[-1].target_id
    assert cli_main([*meta, "admin", "offline-target", str(tail)]) == 0
    payload = b"written while a replica was out" * 5000
    _run(write("/open/during-offline", payload))
    assert cli_main([*meta, "admin", "online-target", str(tail)]) == 0
    deadline = time.monotonic() + 30
    while problems := cluster_problems(_run(routing())):
        assert time.monotonic() < deadline, f"the target did not come back: {problems}"
        time.sleep(0.2)

    async def read_from_each_replica() -> None:
        async with Client(auth_cluster.meta_address, token=TOKENS["user"], transport="grpc") as alice:
            assert await alice.read_file("/open/during-offline") == payload

    _run(read_from_each_replica())


BAD_FILES = {
    "short token": {"tokens": [{"name": "s", "token": "short-secret-1", "server": True}]},
    "duplicate token": {"tokens": [{"name": "a", "token": "x" * 20, "admin": True},
                                   {"name": "s", "token": "x" * 20, "server": True}]},
    "missing uid": {"tokens": [{"name": "u", "token": "y" * 20, "gid": 1},
                               {"name": "s", "token": "z" * 20, "server": True}]},
}


@pytest.mark.parametrize("program", ["emberfs.metaserver", "emberfs.storage"])
def test_bad_tokens_file_exits_1(program: str, tmp_path: Path) -> None:
    cases = {}
    for case, document in BAD_FILES.items():
        path = tmp_path / f"{case.replace(' ', '-')}.json"
        path.write_text(json.dumps(document))
        cases[case] = path
    argv = [sys.executable, "-m", program, "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"]
    if program == "emberfs.storage":
        argv += ["--meta", "127.0.0.1:1", "--node-id", "1"]
    procs = {case: subprocess.Popen([*argv, "--tokens-file", str(path)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for case, path in cases.items()}
    for case, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (case, out, err)
        assert out == ""
        assert f"tokens file {cases[case]}" in err, err
        for document in (BAD_FILES[case],):
            for entry in document["tokens"]:
                assert entry["token"] not in err, "a token value leaked into the error message"


@pytest.mark.parametrize("program", ["emberfs.metaserver", "emberfs.storage"])
def test_tokens_without_usable_keys_exit_1(program: str, tmp_path: Path) -> None:
    """With tokens, capability keys are required: a missing or broken keys file stops the
    server at start with exit 1 and a message that says how to make one, quoting no key."""
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps(_tokens_document()))
    broken = tmp_path / "broken-keys.json"
    secret_text = "c2VjcmV0LWtleS1ieXRlcy1ub3QtbG9uZy1lbm91Z2g"
    broken.write_text(json.dumps({"signing": 1, "keys": [{"id": 1, "key": secret_text[:20]}]}))
    argv = [sys.executable, "-m", program, "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
            "--tokens-file", str(tokens_file)]
    if program == "emberfs.storage":
        argv += ["--meta", "127.0.0.1:1", "--node-id", "1"]
    cases = {"missing (default beside the tokens file)": ([], "does not exist: with tokens, capability keys"),
             "broken": (["--keys-file", str(broken)], "at least 32 bytes")}
    for case, (extra, message) in cases.items():
        proc = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, (case, proc.stdout, proc.stderr)
        assert message in proc.stderr, (case, proc.stderr)
        assert secret_text[:20] not in proc.stderr


def test_local_cluster_auth_subprocess(local_cluster_cli: Any, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`emberfs local-cluster --auth`: tokens and capability keys made in the data dir
    (0600), every server started with them, the user token not root, and stderr says
    which token is which. Issue 16's report: root's 0600 file is refused to the user
    token by `emberfs cat`, `open(rb)`, `read_range` and `read_file` alike."""
    data_dir = local_cluster_cli.data_dir
    meta = local_cluster_cli.start("--auth")
    for name in ("tokens.json", "admin.token", "user.token", "keys.json"):
        assert (data_dir / name).stat().st_mode & 0o777 == 0o600
    user = (data_dir / "user.token").read_text().strip()
    admin = (data_dir / "admin.token").read_text().strip()

    async def io() -> None:
        async with Client(meta, token=user) as fs:
            await fs.stat("/")
        async with Client(meta, token=CREDENTIALS["wrong"]) as fs:
            with pytest.raises(PermissionError, match="missing or invalid token"):
                await fs.stat("/")
        async with Client(meta, token=admin, uid=0, gid=0, groups=[]) as root:
            await root.write_file("/root-only", b"the secret", mode=0o600)
        async with Client(meta, token=user) as fs:
            for read in (fs.read_file("/root-only"), fs.read_range("/root-only", 0, 4)):
                with pytest.raises(PermissionError):
                    await read
            with pytest.raises(PermissionError):
                await fs.open("/root-only", "rb")

    _run(io())
    monkeypatch.delenv("EMBERFS_TOKEN", raising=False)
    capsys.readouterr()
    assert cli_main(["--meta", meta, "--token-file", str(data_dir / "user.token"), "cat", "/root-only"]) == 1
    out, cli_err = capsys.readouterr()
    assert "Permission denied" in cli_err and "the secret" not in out
    err = local_cluster_cli.stop()
    assert f"--token-file {data_dir / 'user.token'}" in err
    assert "a user token, uid " in err and "uid 0 " not in err
    assert "the admin token" in err
    assert user not in err and admin not in err
    assert (data_dir / "keys.json").read_text().split('"key": "')[1][:20] not in err  # no key bytes either

"""The tokens file parser, the token table and the role policy (common/auth.py), table-driven."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from emberfs.common import auth, secretfiles
from emberfs.common.auth import Principal, Role, TokensFileError, allowed_roles, load_tokens_file, parse_tokens
from emberfs.proto import meta_pb2, mgmt_pb2, storage_pb2

T1, T2, T3 = "a" * 16, "b" * 24, "c-" * 10
SERVER = {"name": "storage", "token": T3, "server": True}


def doc(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"tokens": [*entries, SERVER]}


GOOD = [
    ("user with groups", doc({"name": "alice", "token": T1, "uid": 1000, "gid": 1000, "groups": [100, 7]}),
     Principal("alice", Role.USER, 1000, 1000, (100, 7))),
    ("user without groups", doc({"name": "bob", "token": T1, "uid": 0, "gid": 5}), Principal("bob", Role.USER, 0, 5)),
    ("admin", doc({"name": "ops", "token": T1, "admin": True}), Principal("ops", Role.ADMIN)),
    ("admin false means user", doc({"name": "u", "token": T1, "uid": 1, "gid": 1, "admin": False}),
     Principal("u", Role.USER, 1, 1)),
    ("longest id", doc({"name": "u", "token": T1, "uid": 2**32 - 2, "gid": 0}),
     Principal("u", Role.USER, 2**32 - 2, 0)),
]


@pytest.mark.parametrize("case, document, principal", GOOD, ids=[g[0] for g in GOOD])
def test_good_files(case: str, document: dict[str, Any], principal: Principal) -> None:
    table = parse_tokens(document)
    assert table.authenticate(T1) == principal
    assert table.authenticate(T3) == Principal("storage", Role.SERVER)
    assert table.server_token == T3
    assert len(table) == 2


BAD = [
    ("not an object", [], "must be a JSON object"),
    ("extra top-level key", {"tokens": [SERVER], "x": 1}, "one key"),
    ("empty list", {"tokens": []}, "non-empty list"),
    ("entry not an object", {"tokens": ["x", SERVER]}, "entry 1: must be a JSON object"),
    ("no name", doc({"token": T1, "admin": True}), "entry 1: name is missing"),
    ("blank name", doc({"name": " ", "token": T1, "admin": True}), "name is missing or empty"),
    ("no token", doc({"name": "a", "admin": True}), "entry 1 ('a'): token is missing"),
    ("token not a string", doc({"name": "a", "token": 12345678901234567890, "admin": True}), "must be a string"),
    ("short token", doc({"name": "a", "token": "x" * 15, "admin": True}), "shorter than 16"),
    ("token with a space", doc({"name": "a", "token": "x" * 10 + " " + "y" * 10, "admin": True}), "printable ASCII"),
    ("non-ASCII token", doc({"name": "a", "token": "é" * 20, "admin": True}), "printable ASCII"),
    ("huge token", doc({"name": "a", "token": "x" * 4097, "admin": True}), "longer than 4096"),
    ("user without uid", doc({"name": "a", "token": T1, "gid": 1}), "needs uid and gid"),
    ("user without gid", doc({"name": "a", "token": T1, "uid": 1}), "needs uid and gid"),
    ("negative uid", doc({"name": "a", "token": T1, "uid": -1, "gid": 1}), "uid must be an integer"),
    ("uid (uid_t)-1", doc({"name": "a", "token": T1, "uid": 2**32 - 1, "gid": 1}), "uid must be an integer"),
    ("uid a string", doc({"name": "a", "token": T1, "uid": "0", "gid": 1}), "uid must be an integer"),
    ("uid a bool", doc({"name": "a", "token": T1, "uid": True, "gid": 1}), "uid must be an integer"),
    ("groups not a list", doc({"name": "a", "token": T1, "uid": 1, "gid": 1, "groups": 5}), "groups must be a list"),
    ("group out of range", doc({"name": "a", "token": T1, "uid": 1, "gid": 1, "groups": [-2]}), "groups must be"),
    ("admin and server", doc({"name": "a", "token": T1, "admin": True, "server": True}), "not both"),
    ("admin with uid", doc({"name": "a", "token": T1, "admin": True, "uid": 0}), "admin entry has no uid"),
    ("admin not a bool", doc({"name": "a", "token": T1, "admin": "yes"}), "true or false"),
    ("typo in a key", doc({"name": "a", "token": T1, "admn": True}), "unknown key(s) admn"),
    ("duplicate token", doc({"name": "a", "token": T1, "admin": True}, {"name": "b", "token": T1, "uid": 1, "gid": 1}),
     "entry 2 ('b'): same token as entry 1"),
    ("server shares a token", doc({"name": "a", "token": T3, "admin": True}), "entry 2 ('storage'): same token"),
    ("duplicate name", doc({"name": "a", "token": T1, "admin": True}, {"name": "a", "token": T2, "admin": True}),
     "name 'a' is also entry 1"),
    ("no server entry", {"tokens": [{"name": "a", "token": T1, "admin": True}]}, "no server entry"),
]


@pytest.mark.parametrize("case, document, message", BAD, ids=[b[0] for b in BAD])
def test_bad_files(case: str, document: Any, message: str) -> None:
    with pytest.raises(TokensFileError) as caught:
        parse_tokens(document, source="tokens file t.json")
    assert message in caught.value.message
    assert caught.value.message.startswith("tokens file t.json")
    for secret in (T1, T2, T3, "x" * 15, "é" * 20):
        assert secret not in caught.value.message  # never quote a token


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ("\xff", "not valid JSON"),
    (None, "cannot read it"),
])
def test_load_file_errors(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "tokens.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(TokensFileError, match=message):
        load_tokens_file(path)


def test_authenticate() -> None:
    table = parse_tokens(doc({"name": "alice", "token": T1, "uid": 1, "gid": 1}))
    assert table.authenticate(T1.encode()) == table.authenticate(T1)
    for wrong in (None, "", b"", T1[:-1], T1 + "a", T2, T1.upper(), "\x00" * 16):
        assert table.authenticate(wrong) is None
    assert T1 not in repr(table) and T3 not in repr(table)


def test_every_rpc_has_a_decided_policy() -> None:
    """A method nobody classified would be admin-only: make every one a choice."""
    for pb2, service in ((meta_pb2, "Meta"), (mgmt_pb2, "Mgmt"), (storage_pb2, "Storage")):
        methods = {m.name for m in pb2.DESCRIPTOR.services_by_name[service].methods}
        assert methods == set(auth.POLICY[f"emberfs.{service}"]), service


POLICY_TABLE = [
    ("emberfs.Meta", "Stat", {Role.USER, Role.ADMIN}),
    ("emberfs.Meta", "Remove", {Role.USER, Role.ADMIN}),
    ("emberfs.Mgmt", "GetRouting", {Role.USER, Role.ADMIN, Role.SERVER}),
    ("emberfs.Mgmt", "RegisterNode", {Role.SERVER}),
    ("emberfs.Mgmt", "Heartbeat", {Role.SERVER}),
    ("emberfs.Mgmt", "InitChains", {Role.ADMIN}),
    ("emberfs.Mgmt", "SetTargetAdminState", {Role.ADMIN}),
    ("emberfs.Storage", "Read", {Role.USER, Role.ADMIN, Role.SERVER}),
    ("emberfs.Storage", "Write", {Role.USER, Role.ADMIN, Role.SERVER}),
    ("emberfs.Storage", "Forward", {Role.SERVER}),
    ("emberfs.Storage", "RemoveChunks", {Role.SERVER}),
    ("emberfs.Storage", "SyncDump", {Role.SERVER}),
    ("emberfs.Storage", "SyncDone", {Role.SERVER}),
    ("emberfs.Storage", "GetCommitVersion", {Role.SERVER}),
    ("emberfs.Storage", "NewMethod", {Role.ADMIN}),
    ("other.Service", "Anything", {Role.ADMIN}),
    ("grpc.health.v1.Health", "Check", {Role.USER, Role.ADMIN, Role.SERVER}),
]


@pytest.mark.parametrize("service, method, roles", POLICY_TABLE)
def test_policy(service: str, method: str, roles: set[Role]) -> None:
    assert allowed_roles(service, method) == roles


def test_generated_tokens_and_private_files(tmp_path: Path) -> None:
    document = auth.generate_tokens(uid=1000, gid=100, groups=[5, 5, 3])
    table = parse_tokens(document)
    roles = sorted(p.role.value for p in table.principals())
    assert roles == ["admin", "server", "user"]
    user = next(p for p in table.principals() if p.role is Role.USER)
    assert (user.uid, user.gid, user.groups) == (1000, 100, (3, 5))
    path = tmp_path / "tokens.json"
    secretfiles.write_private(path, json.dumps(document))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(load_tokens_file(path)) == 3
    assert not secretfiles.group_or_world_readable(path)
    path.chmod(0o644)
    assert secretfiles.group_or_world_readable(path)


def test_local_cluster_auth_files(tmp_path: Path) -> None:
    """LocalCluster(auth=True) makes its tokens once and keeps them across restarts."""
    from emberfs.client import _launch

    cluster = _launch.LocalCluster(tmp_path, nodes=1, replicas=1, auth=True)
    assert cluster.tokens_file == tmp_path / "tokens.json"
    for name in ("tokens.json", "admin.token", "user.token", "keys.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    table = load_tokens_file(tmp_path / "tokens.json")
    admin = (tmp_path / "admin.token").read_text().strip()
    assert cluster.admin_token == admin
    assert table.authenticate(admin).role is Role.ADMIN  # type: ignore[union-attr]
    user = table.authenticate((tmp_path / "user.token").read_text().strip())
    # never root: this process's identity when it is not root, else uid/gid 1000
    expected = (os.getuid(), os.getgid()) if os.getuid() != 0 else (auth.NON_ROOT_UID, auth.NON_ROOT_UID)
    assert user is not None and (user.role, user.uid, user.gid) == (Role.USER, *expected)
    assert "--tokens-file" in cluster.meta.argv
    again = _launch.LocalCluster(tmp_path, nodes=1, replicas=1, auth=True)
    assert again.admin_token == admin


def test_sync_client_pickles_its_token() -> None:
    import pickle

    from emberfs.client import SyncClient

    client = SyncClient("127.0.0.1:1", token=T1)
    try:
        copy = pickle.loads(pickle.dumps(client))
        try:
            assert copy._options["token"] == T1
        finally:
            copy.close()
    finally:
        client.close()


@pytest.mark.parametrize("token", ["", "has space in it!", "tab\there-0123456789", "é" * 20])
def test_client_refuses_a_token_grpc_cannot_send(token: str) -> None:
    from emberfs.client import Client

    with pytest.raises(ValueError, match="printable ASCII"):
        Client("127.0.0.1:1", token=token)

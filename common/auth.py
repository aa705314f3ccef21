"""Token authentication: the tokens file, who a token is, and what each role may call.

Pure (no gRPC, no sockets): `authgrpc.py` applies it to gRPC services and channels,
`storage/bulkserver.py` to the bulk channel's hello.

A tokens file (`--tokens-file PATH` on emberfs-meta and emberfs-storage) is JSON:

    {"tokens": [
      {"name": "alice",   "token": "...", "uid": 1000, "gid": 1000, "groups": [100]},
      {"name": "ops",     "token": "...", "admin": true},
      {"name": "storage", "token": "...", "server": true}
    ]}

Each entry has exactly one role:
- user (uid and gid, optional groups): namespace calls run as that identity, whatever
  the request header says; data reads and writes; routing queries.
- admin: namespace calls run as the identity the header names (an operator acting for
  anyone, root included); cluster changes (InitChains, SetTargetAdminState).
- server: storage servers and the metaserver's chunk GC: registration, heartbeats,
  chain forwarding, resync and chunk removal. Not the namespace.

Rules, checked once at load: at least one entry, names and tokens unique, tokens of
MIN_TOKEN..MAX_TOKEN printable ASCII characters without spaces (they travel in gRPC
metadata and the bulk hello), no unknown keys (a mistyped "admn" must not silently
make a user). A server entry is required: storage servers cannot register without one.
Token values never appear in an error message, a repr or a log line.

Matching is constant-time in the token: the table is keyed by the token's SHA-256,
and the stored token is then compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from emberfs.common.capkeys import KEYS_FILE, write_keys_file
from emberfs.common.errors import InvalidArgument
from emberfs.common.secretfiles import group_or_world_readable, read_secret_json, write_private

__all__ = [
    "ANY_ROLE",
    "MAX_ID",
    "MAX_TOKEN",
    "MIN_TOKEN",
    "OPEN_SERVICES",
    "POLICY",
    "Principal",
    "Role",
    "TokenTable",
    "TokensFileError",
    "allowed_roles",
    "generate_tokens",
    "user_identity",
    "load_tokens_file",
    "parse_tokens",
    "read_token_file",
    "token_from_env",
    "write_token_files",
]

MIN_TOKEN = 16
MAX_TOKEN = 4096  # the bulk hello's cap (bulkwire.MAX_TOKEN)
MAX_ID = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is (uid_t)-1
MAX_GROUPS = 65536
TOKEN_ENV = "EMBERFS_TOKEN"
TOKENS_FILE_ENV = "EMBERFS_TOKENS_FILE"  # servers: the default of --tokens-file
TOKEN_FILE_ENV = "EMBERFS_TOKEN_FILE"  # the CLI: the default of --token-file
TOKENS_FILE, ADMIN_TOKEN_FILE, USER_TOKEN_FILE = "tokens.json", "admin.token", "user.token"
_KEYS = {"name", "token", "uid", "gid", "groups", "admin", "server"}


class Role(enum.Enum):
    USER = "user"
    ADMIN = "admin"
    SERVER = "server"


ANY_ROLE = frozenset(Role)
_PEOPLE = frozenset({Role.USER, Role.ADMIN})
_ADMIN = frozenset({Role.ADMIN})
_SERVER = frozenset({Role.SERVER})

# Which roles may call which method. A method missing from its service's table (a new
# one nobody classified yet) is admin-only; so is a service missing here.
POLICY: Mapping[str, Mapping[str, frozenset[Role]]] = {
    "emberfs.Meta": {
        name: _PEOPLE
        for name in ("Stat", "List", "Readlink", "StatFs", "Create", "Mkdir", "Remove", "Rename", "Link",
                     "Symlink", "SetAttr", "Truncate", "Open", "Close", "Sync", "GetCapability")
    },
    "emberfs.Mgmt": {
        "GetRouting": ANY_ROLE,  # clients route by it; `emberfs cluster` and df show it
        "RegisterNode": _SERVER,
        "Heartbeat": _SERVER,
        "InitChains": _ADMIN,
        "SetTargetAdminState": _ADMIN,
    },
    "emberfs.Storage": {
        "Read": ANY_ROLE,
        "Write": ANY_ROLE,
        "QueryLastChunk": ANY_ROLE,
        "TargetStats": ANY_ROLE,
        # Chain peers, the resync worker and the metaserver's GC only: a user could
        # otherwise write a replica behind its chain head or delete any file's chunks.
        "Forward": _SERVER,
        "GetCommitVersion": _SERVER,
        "RemoveChunks": _SERVER,
        "SyncDump": _SERVER,
        "SyncDone": _SERVER,
    },
}
# Left open so health checks (compose, load balancers) work without a token.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})


def allowed_roles(service: str, method: str) -> frozenset[Role]:
    """The roles that may call `service`/`method` (service as in "emberfs.Meta")."""
    if service in OPEN_SERVICES:
        return ANY_ROLE
    return POLICY.get(service, {}).get(method, _ADMIN)


class TokensFileError(InvalidArgument):
    """The tokens file is missing, unreadable or breaks a rule; the server does not start."""


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a valid token belongs to. uid/gid/groups are meaningful for Role.USER only."""

    name: str
    role: Role
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Entry:
    principal: Principal
    token: bytes = dataclasses.field(repr=False)


class TokenTable:
    """The valid tokens of one server. `authenticate` is the only way in."""

    def __init__(self, entries: Iterable[tuple[Principal, str]]) -> None:
        self._by_digest: dict[bytes, _Entry] = {}
        self._server_token: str | None = None
        for principal, token in entries:
            raw = token.encode("ascii")
            self._by_digest[hashlib.sha256(raw).digest()] = _Entry(principal, raw)
            if principal.role is Role.SERVER and self._server_token is None:
                self._server_token = token

    def __repr__(self) -> str:
        return f"<TokenTable of {len(self._by_digest)} tokens>"

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, token: str | bytes | None) -> Principal | None:
        """The principal `token` belongs to, or None."""
        if not token:
            return None
        raw = token.encode("utf-8", "replace") if isinstance(token, str) else bytes(token)
        entry = self._by_digest.get(hashlib.sha256(raw).digest())
        if entry is None or not hmac.compare_digest(entry.token, raw):
            return None
        return entry.principal

    @property
    def server_token(self) -> str | None:
        """The token this process presents to other servers (the first server entry)."""
        return self._server_token

    def principals(self) -> list[Principal]:
        return [entry.principal for entry in self._by_digest.values()]


def _int_field(entry: Mapping[str, Any], key: str, where: str) -> int:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise TokensFileError(f"{where}: {key} must be an integer in 0..{MAX_ID}")
    return value


def _check_token(token: Any, where: str) -> str:
    if not isinstance(token, str):
        raise TokensFileError(f"{where}: token must be a string")
    if len(token) < MIN_TOKEN:
        raise TokensFileError(f"{where}: token is shorter than {MIN_TOKEN} characters")
    if len(token) > MAX_TOKEN:
        raise TokensFileError(f"{where}: token is longer than {MAX_TOKEN} characters")
    if not all("!" <= c <= "~" for c in token):
        raise TokensFileError(f"{where}: token must be printable ASCII without spaces")
    return token


def _principal(entry: Mapping[str, Any], where: str) -> Principal:
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise TokensFileError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    name = entry["name"]
    admin, server = entry.get("admin", False), entry.get("server", False)
    if not isinstance(admin, bool) or not isinstance(server, bool):
        raise TokensFileError(f"{where}: admin and server must be true or false")
    has_identity = any(key in entry for key in ("uid", "gid", "groups"))
    if admin and server:
        raise TokensFileError(f"{where}: an entry is admin or server, not both")
    if admin or server:
        if has_identity:
            raise TokensFileError(f"{where}: an {'admin' if admin else 'server'} entry has no uid, gid or groups")
        return Principal(name, Role.ADMIN if admin else Role.SERVER)
    for key in ("uid", "gid"):
        if key not in entry:
            raise TokensFileError(f"{where}: a user entry needs uid and gid (or \"admin\": true / \"server\": true)")
    groups = entry.get("groups", [])
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise TokensFileError(f"{where}: groups must be a list of at most {MAX_GROUPS} group ids")
    for g in groups:
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= MAX_ID:
            raise TokensFileError(f"{where}: groups must be integers in 0..{MAX_ID}")
    return Principal(name, Role.USER, _int_field(entry, "uid", where), _int_field(entry, "gid", where),
                     tuple(groups))


def parse_tokens(document: Any, *, source: str = "tokens file") -> TokenTable:
    """Validate a decoded tokens file; TokensFileError says what is wrong and where
    (by entry number and name, never by token value)."""
    if not isinstance(document, dict) or set(document) != {"tokens"}:
        raise TokensFileError(f"{source}: must be a JSON object with one key, \"tokens\"")
    entries = document["tokens"]
    if not isinstance(entries, list) or not entries:
        raise TokensFileError(f"{source}: \"tokens\" must be a non-empty list")
    parsed: list[tuple[Principal, str]] = []
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    for index, entry in enumerate(entries, 1):
        where = f"{source}: entry {index}"
        if not isinstance(entry, dict):
            raise TokensFileError(f"{where}: must be a JSON object")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TokensFileError(f"{where}: name is missing or empty")
        where = f"{where} ({name!r})"
        if "token" not in entry:
            raise TokensFileError(f"{where}: token is missing")
        token = _check_token(entry["token"], where)
        principal = _principal(entry, where)
        if name in names:
            raise TokensFileError(f"{where}: name {name!r} is also entry {names[name]}")
        digest = hashlib.sha256(token.encode("ascii")).digest()
        if digest in digests:
            raise TokensFileError(f"{where}: same token as entry {digests[digest]}")
        names[name], digests[digest] = index, index
        parsed.append((principal, token))
    if not any(p.role is Role.SERVER for p, _ in parsed):
        raise TokensFileError(f"{source}: no server entry (\"server\": true): storage servers could not "
                              "register nor reach each other")
    return TokenTable(parsed)


def load_tokens_file(path: str | os.PathLike[str], *, warn: bool = False) -> TokenTable:
    """Read and validate a tokens file; TokensFileError on any problem. `warn`: say on
    stderr when others than its owner may read it."""
    source = f"tokens file {os.fspath(path)}"
    table = parse_tokens(read_secret_json(path, source, TokensFileError), source=source)
    if warn and group_or_world_readable(path):
        print(f"warning: {source} is readable by group or others: chmod 600 it", file=sys.stderr)
    return table


def read_token_file(path: str | os.PathLike[str]) -> str:
    """A client's token from a file holding it (surrounding whitespace ignored)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(
            f"cannot read the token file {os.fspath(path)}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    if not token:
        raise OSError(f"the token file {os.fspath(path)} is empty")
    return token


def token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def generate_tokens(*, uid: int, gid: int, groups: Iterable[int] = ()) -> dict[str, Any]:
    """A fresh tokens document: an admin, a server and a user with this identity."""
    return {"tokens": [
        {"name": "admin", "token": secrets.token_urlsafe(32), "admin": True},
        {"name": "server", "token": secrets.token_urlsafe(32), "server": True},
        {"name": "user", "token": secrets.token_urlsafe(32), "uid": uid, "gid": gid, "groups": sorted(set(groups))},
    ]}


NON_ROOT_UID = 1000  # the generated user token's identity when this process is root


def user_identity() -> tuple[int, int, tuple[int, ...]]:
    """(uid, gid, groups) for the generated user token: this process's when it is not
    root, else NON_ROOT_UID with no groups. A user token that is root would pass every
    permission check, and a first try of `--auth` should show a 0600 file refused."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid(), tuple(os.getgroups())
    return NON_ROOT_UID, NON_ROOT_UID, ()


def write_token_files(directory: str | os.PathLike[str]) -> Path:
    """Make `directory`/tokens.json (admin, server and user tokens, the user being
    `user_identity()`, never root), admin.token / user.token holding one token each, and
    keys.json (the capability keys, capkeys.py), all 0600, unless they exist already
    (then nothing changes). Returns tokens.json's path.
    Used by `emberfs local-cluster --auth` and the compose auth override."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    write_keys_file(folder / KEYS_FILE)  # also for a folder made before capabilities existed
    tokens_file = folder / TOKENS_FILE
    if tokens_file.exists():
        return tokens_file
    uid, gid, groups = user_identity()
    document = generate_tokens(uid=uid, gid=gid, groups=groups)
    by_name = {entry["name"]: entry["token"] for entry in document["tokens"]}
    write_private(folder / ADMIN_TOKEN_FILE, by_name["admin"] + "\n")
    write_private(folder / USER_TOKEN_FILE, by_name["user"] + "\n")
    write_private(tokens_file, json.dumps(document, indent=1) + "\n")  # last: its presence means "all made"
    return tokens_file


if __name__ == "__main__":  # `python -m emberfs.common.auth DIR`: write_token_files(DIR)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m emberfs.common.auth DIR  (makes DIR/tokens.json, admin.token, user.token, "
                 "keys.json)")
    print(write_token_files(sys.argv[1]))

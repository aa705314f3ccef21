"""The cluster's capability keys: the keys file, its rotation, and reloading it live.

The metaserver signs capabilities (capability.py) with the *signing* key; storage
servers accept any key of the file. Clients never see the file. It is JSON, 0600:

    {"signing": 2, "keys": [{"id": 1, "key": "<base64url>"}, {"id": 2, "key": "<base64url>"}]}

Rules, checked at load: ids are unique integers in 1..2**32-1, each key decodes to
at least MIN_KEY_BYTES bytes, the signing id is one of the keys, no unknown fields.
Key bytes never appear in a message, a repr or a log line.

Rotation without a restart (two keys valid during the roll):
1. `python -m emberfs.common.capkeys rotate FILE` adds a key with the next id and makes
   it the signing key; the old one stays for verification. Copy the file to every
   storage server first and to the metaserver last (a server refuses what a key it
   lacks signed); they re-read it when its mtime changes (polled each second) or on SIGHUP.
2. After the longest capability lifetime (the metaserver's --capability-ttl) has
   passed, `python -m emberfs.common.capkeys retire FILE` drops every key but the
   signing one; copy it out again. Capabilities signed with a retired key are refused,
   and clients renew them at the metaserver.

A file that fails to load on a reload is logged and ignored: the server keeps the keys
it had, so a half-copied file cannot take the data path down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from emberfs.common.errors import InvalidArgument
from emberfs.common.secretfiles import group_or_world_readable, read_secret_json, write_private

__all__ = [
    "KEYS_FILE",
    "KEYS_FILE_ENV",
    "KeyRing",
    "KeySet",
    "KeysFileError",
    "MIN_KEY_BYTES",
    "default_keys_path",
    "keyring_for",
    "watch",
    "generate_keys",
    "load_keys_file",
    "parse_keys",
    "retire",
    "rotate",
    "write_keys_file",
]

log = logging.getLogger("emberfs.capkeys")

KEYS_FILE = "keys.json"
KEYS_FILE_ENV = "EMBERFS_KEYS_FILE"
MIN_KEY_BYTES = 32
_MAX_ID = 2**32 - 1
_FIELDS, _KEY_FIELDS = {"signing", "keys"}, {"id", "key"}


class KeysFileError(InvalidArgument):
    """The keys file is missing, unreadable or breaks a rule."""


@dataclasses.dataclass(frozen=True)
class KeySet:
    """The keys of one keys file: `signing` signs, every one of `keys` verifies."""

    signing: int
    keys: Mapping[int, bytes] = dataclasses.field(repr=False)

    @property
    def signing_key(self) -> bytes:
        return self.keys[self.signing]

    def __repr__(self) -> str:
        return f"<KeySet signing={self.signing} ids={sorted(self.keys)}>"


def _encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def parse_keys(document: Any, *, source: str = "keys file") -> KeySet:
    """Validate a decoded keys file; KeysFileError names the entry, never the key."""
    if not isinstance(document, dict) or set(document) != _FIELDS:
        raise KeysFileError(f"{source}: must be a JSON object with exactly \"signing\" and \"keys\"")
    entries = document["keys"]
    if not isinstance(entries, list) or not entries:
        raise KeysFileError(f"{source}: \"keys\" must be a non-empty list")
    keys: dict[int, bytes] = {}
    for index, entry in enumerate(entries, 1):
        where = f"{source}: key entry {index}"
        if not isinstance(entry, dict) or set(entry) != _KEY_FIELDS:
            raise KeysFileError(f"{where}: must be an object with exactly \"id\" and \"key\"")
        key_id = entry["id"]
        if isinstance(key_id, bool) or not isinstance(key_id, int) or not 1 <= key_id <= _MAX_ID:
            raise KeysFileError(f"{where}: id must be an integer in 1..{_MAX_ID}")
        if key_id in keys:
            raise KeysFileError(f"{where}: id {key_id} appears twice")
        text = entry["key"]
        try:
            raw = base64.urlsafe_b64decode(text.encode("ascii")) if isinstance(text, str) else b""
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = b""
        if len(raw) < MIN_KEY_BYTES:
            raise KeysFileError(f"{where} (id {key_id}): key must be base64url of at least {MIN_KEY_BYTES} bytes")
        keys[key_id] = raw
    signing = document["signing"]
    if isinstance(signing, bool) or signing not in keys:
        raise KeysFileError(f"{source}: \"signing\" must be the id of one of the keys")
    return KeySet(signing, keys)


def load_keys_file(path: str | os.PathLike[str], *, warn: bool = False) -> KeySet:
    source = f"keys file {os.fspath(path)}"
    keyset = parse_keys(read_secret_json(path, source, KeysFileError), source=source)
    if warn and group_or_world_readable(path):
        print(f"warning: {source} is readable by group or others: chmod 600 it", file=sys.stderr)
    return keyset


def default_keys_path(tokens_file: str | os.PathLike[str] | None) -> Path | None:
    """Where a server looks for the keys: $EMBERFS_KEYS_FILE, else keys.json beside
    the tokens file (where `python -m emberfs.common.auth DIR` makes both)."""
    env = os.environ.get(KEYS_FILE_ENV)
    if env:
        return Path(env)
    if tokens_file is None:
        return None
    return Path(tokens_file).with_name(KEYS_FILE)


def generate_keys(key_id: int = 1) -> dict[str, Any]:
    return {"signing": key_id, "keys": [{"id": key_id, "key": _encode_key(secrets.token_bytes(MIN_KEY_BYTES))}]}


def _write(path: Path, document: Mapping[str, Any]) -> None:
    write_private(path, json.dumps(document, indent=1) + "\n")


def write_keys_file(path: str | os.PathLike[str]) -> Path:
    """Make a keys file with one fresh key (0600) unless one exists; returns its path."""
    target = Path(path)
    if not target.exists():
        _write(target, generate_keys())
    return target


def rotate(path: str | os.PathLike[str]) -> int:
    """Add a fresh key with the next id and make it the signing one; the old keys stay
    valid for verification. Returns the new id."""
    keyset = load_keys_file(path)
    new_id = max(keyset.keys) + 1
    if new_id > _MAX_ID:
        raise KeysFileError(f"keys file {os.fspath(path)}: no key id left after {max(keyset.keys)}")
    entries = [{"id": i, "key": _encode_key(k)} for i, k in sorted(keyset.keys.items())]
    entries.append({"id": new_id, "key": _encode_key(secrets.token_bytes(MIN_KEY_BYTES))})
    _write(Path(path), {"signing": new_id, "keys": entries})
    return new_id


def retire(path: str | os.PathLike[str]) -> list[int]:
    """Drop every key but the signing one; returns the ids dropped."""
    keyset = load_keys_file(path)
    dropped = sorted(i for i in keyset.keys if i != keyset.signing)
    _write(Path(path), {"signing": keyset.signing,
                        "keys": [{"id": keyset.signing, "key": _encode_key(keyset.signing_key)}]})
    return dropped


class KeyRing:
    """The keys of a running server, re-read from their file when it changes.

    `reload_if_changed()` (called each second by the server, and at once on SIGHUP with
    force=True) compares the file's (mtime, size, inode) with the last load's; on a
    change it loads the file and tells each listener. A file that does not load is
    logged and ignored; the keys in memory stay.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp = self._stat()
        self.keys: KeySet = load_keys_file(self.path, warn=True)
        self._listeners: list[Callable[[KeySet], None]] = []

    def __repr__(self) -> str:
        return f"<KeyRing {self.path} {self.keys!r}>"

    def on_change(self, listener: Callable[[KeySet], None]) -> None:
        self._listeners.append(listener)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed (or `force`); True when the keys changed."""
        stamp = self._stat()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            keyset = load_keys_file(self.path)
        except KeysFileError as exc:
            log.error("keeping the capability keys in use (ids %s): %s", sorted(self.keys.keys), exc.message)
            return False
        if keyset.signing == self.keys.signing and dict(keyset.keys) == dict(self.keys.keys):
            return False
        log.info("capability keys reloaded from %s: ids %s, signing with %d", self.path, sorted(keyset.keys),
                 keyset.signing)
        self.keys = keyset
        for listener in self._listeners:
            listener(keyset)
        return True


def keyring_for(tokens_file: str | os.PathLike[str] | None,
                keys_file: str | os.PathLike[str] | None) -> KeyRing | None:
    """A server's key ring: none without tokens (nothing to check capabilities against:
    every caller is trusted anyway); with tokens, `keys_file` or the default beside the
    tokens file, which must exist. KeysFileError says how to make one."""
    if tokens_file is None:
        if keys_file:
            print(f"warning: keys file {os.fspath(keys_file)} ignored: capabilities are checked only with "
                  "--tokens-file", file=sys.stderr)
        return None
    path = Path(keys_file) if keys_file else default_keys_path(tokens_file)
    assert path is not None
    if not path.exists():
        raise KeysFileError(
            f"keys file {path} does not exist: with tokens, capability keys are required (make them with "
            f"`python -m emberfs.common.capkeys new {path}`, or `python -m emberfs.common.auth DIR` for tokens "
            "and keys together, and give every server the same file)")
    return KeyRing(path)


async def watch(ring: KeyRing, interval_s: float = 1.0) -> None:
    """Re-read the keys file whenever it changes, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            ring.reload_if_changed()
        except Exception:  # a listener's bug must not end the watch
            log.exception("reloading the capability keys failed")


def _main(argv: list[str]) -> int:
    usage = ("usage: python -m emberfs.common.capkeys new|rotate|retire FILE\n"
             "  new: make FILE with one key (if missing); rotate: add a key that signs from now on;\n"
             "  retire: drop every key but the signing one")
    if len(argv) != 2 or argv[0] not in ("new", "rotate", "retire"):
        print(usage, file=sys.stderr)
        return 2
    command, path = argv
    try:
        if command == "new":
            print(write_keys_file(path))
        elif command == "rotate":
            print(f"{path}: key {rotate(path)} signs from now on; the others still verify")
        else:
            dropped = retire(path)
            print(f"{path}: retired key(s) {', '.join(map(str, dropped)) or 'none'}")
    except KeysFileError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

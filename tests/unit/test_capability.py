"""Capabilities (common/capability.py) and their keys file (common/capkeys.py), table-driven."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from emberfs.common import capability as cap
from emberfs.common import capkeys
from emberfs.common.capability import RIGHT_READ, RIGHT_WRITE, CapabilityError, CapabilityVerifier

K1, K2 = b"k" * 32, b"q" * 32
KEYS = {1: K1, 2: K2}
NOW = 1_700_000_000_000
RW = RIGHT_READ | RIGHT_WRITE


def good(inode: int = 7, rights: int = RIGHT_READ, expires: int = NOW + 60_000, key_id: int = 1,
         key: bytes = K1) -> bytes:
    return cap.sign(key_id, key, inode, rights, expires)


def test_layout_is_compact_and_fixed() -> None:
    blob = good()
    assert len(blob) == cap.CAPABILITY_SIZE == 54
    assert blob[0] == cap.VERSION
    assert cap.decode(blob) == cap.Capability(key_id=1, inode_id=7, rights=RIGHT_READ, expires_ms=NOW + 60_000)
    assert good() == good()  # deterministic: equal grants give equal blobs (the verifiers' cache hits)


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:]


# (case, blob, inode asked, right asked, refusal text or None for accepted)
CASES: list[tuple[str, bytes, int, int, str | None]] = [
    ("read cap, read", good(), 7, RIGHT_READ, None),
    ("rw cap, write", good(rights=RW), 7, RIGHT_WRITE, None),
    ("rw cap, read", good(rights=RW), 7, RIGHT_READ, None),
    ("second key verifies too", good(key_id=2, key=K2), 7, RIGHT_READ, None),
    ("read cap, write", good(), 7, RIGHT_WRITE, "grants read, not write"),
    ("write cap, read", good(rights=RIGHT_WRITE), 7, RIGHT_READ, "grants write, not read"),
    ("other inode", good(inode=8), 7, RIGHT_READ, "for inode 8, not 7"),
    ("expired", good(expires=NOW - 1), 7, RIGHT_READ, "expired 1 ms ago"),
    ("expires now", good(expires=NOW), 7, RIGHT_READ, "expired 0 ms ago"),
    ("empty", b"", 7, RIGHT_READ, "no capability"),
    ("short", good()[:-1], 7, RIGHT_READ, "of 53 bytes"),
    ("long", good() + b"\0", 7, RIGHT_READ, "of 55 bytes"),
    ("bad version", bytes([9]) + good()[1:], 7, RIGHT_READ, "version 9"),
    ("unknown key id", good(key_id=3, key=K1), 7, RIGHT_READ, "key 3, which this server does not hold"),
    ("signed with the wrong key", good(key_id=1, key=K2), 7, RIGHT_READ, "does not verify"),
    ("inode altered", _flip(good(), 5), 7 ^ 1, RIGHT_READ, "does not verify"),
    ("rights altered", _flip(good(), 13), 7, RIGHT_READ | RIGHT_WRITE, "does not verify"),
    ("expiry altered", _flip(good(expires=NOW - 1), 14), 7, RIGHT_READ, "does not verify"),
    ("mac altered", _flip(good(), 40), 7, RIGHT_READ, "does not verify"),
    ("all zeros", bytes(54), 7, RIGHT_READ, "version 0"),
]


@pytest.mark.parametrize("case, blob, inode, right, refusal", CASES, ids=[c[0] for c in CASES])
def test_verify_table(case: str, blob: bytes, inode: int, right: int, refusal: str | None) -> None:
    verifier = CapabilityVerifier(KEYS)
    for _ in range(2):  # the second time from the cache: the same verdict
        if refusal is None:
            assert verifier.authorize(blob, inode, right, NOW).inode_id == inode
        else:
            with pytest.raises(CapabilityError, match=refusal):
                verifier.authorize(blob, inode, right, NOW)


def test_cached_capability_still_expires() -> None:
    verifier = CapabilityVerifier(KEYS)
    blob = good(expires=NOW + 10)
    verifier.authorize(blob, 7, RIGHT_READ, NOW)
    with pytest.raises(CapabilityError, match="expired"):
        verifier.authorize(blob, 7, RIGHT_READ, NOW + 10)


def test_new_keys_forget_verified_blobs() -> None:
    """A retired key must stop working at once, cached or not."""
    verifier = CapabilityVerifier(KEYS)
    old = good(key_id=1, key=K1)
    verifier.authorize(old, 7, RIGHT_READ, NOW)
    verifier.set_keys({2: K2})
    with pytest.raises(CapabilityError, match="key 1"):
        verifier.authorize(old, 7, RIGHT_READ, NOW)
    assert verifier.key_ids == {2}


def test_cache_is_bounded() -> None:
    verifier = CapabilityVerifier(KEYS, max_entries=4)
    for inode in range(1, 20):
        verifier.authorize(good(inode=inode), inode, RIGHT_READ, NOW)
    assert len(verifier._verified) <= 4


@pytest.mark.parametrize("args", [
    (1, K1, 0, RIGHT_READ, NOW), (1, K1, 7, 0, NOW), (1, K1, 7, 4, NOW), (-1, K1, 7, RIGHT_READ, NOW),
    (1, b"", 7, RIGHT_READ, NOW), (1, K1, 7, RIGHT_READ, -5), (2**32, K1, 7, RIGHT_READ, NOW),
])
def test_sign_refuses_nonsense(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        cap.sign(*args)


# -- the keys file ---------------------------------------------------------------------

def _key(n: int = 32) -> str:
    return base64.urlsafe_b64encode(os.urandom(n)).decode()


BAD_KEYS: list[tuple[str, Any, str]] = [
    ("not an object", [], "exactly \"signing\" and \"keys\""),
    ("extra field", {"signing": 1, "keys": [{"id": 1, "key": _key()}], "x": 1}, "exactly"),
    ("no keys", {"signing": 1, "keys": []}, "non-empty list"),
    ("entry field", {"signing": 1, "keys": [{"id": 1, "key": _key(), "k": 1}]}, "key entry 1"),
    ("id zero", {"signing": 0, "keys": [{"id": 0, "key": _key()}]}, "id must be an integer"),
    ("id bool", {"signing": 1, "keys": [{"id": True, "key": _key()}]}, "id must be an integer"),
    ("duplicate id", {"signing": 1, "keys": [{"id": 1, "key": _key()}, {"id": 1, "key": _key()}]}, "twice"),
    ("short key", {"signing": 1, "keys": [{"id": 1, "key": _key(16)}]}, "at least 32 bytes"),
    ("not base64", {"signing": 1, "keys": [{"id": 1, "key": "!!!"}]}, "base64url"),
    ("key not a string", {"signing": 1, "keys": [{"id": 1, "key": 5}]}, "base64url"),
    ("signing unknown", {"signing": 2, "keys": [{"id": 1, "key": _key()}]}, "\"signing\" must be"),
]


@pytest.mark.parametrize("case, document, message", BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_bad_keys_files(case: str, document: Any, message: str) -> None:
    with pytest.raises(capkeys.KeysFileError, match=message) as info:
        capkeys.parse_keys(document)
    for entry in (document.get("keys", []) if isinstance(document, dict) else []):
        if isinstance(entry, dict) and isinstance(entry.get("key"), str) and len(entry["key"]) > 8:
            assert entry["key"] not in info.value.message


def test_rotate_and_retire(tmp_path: Path) -> None:
    path = capkeys.write_keys_file(tmp_path / "keys.json")
    assert path.stat().st_mode & 0o777 == 0o600
    first = capkeys.load_keys_file(path)
    assert first.signing == 1 and set(first.keys) == {1}
    assert capkeys.rotate(path) == 2
    rolled = capkeys.load_keys_file(path)
    assert rolled.signing == 2 and rolled.keys[1] == first.keys[1] and len(rolled.keys[2]) == 32
    assert capkeys.retire(path) == [1]
    after = capkeys.load_keys_file(path)
    assert after.signing == 2 and set(after.keys) == {2}
    assert path.stat().st_mode & 0o777 == 0o600
    assert "key" not in repr(after).replace("KeySet", "")  # the repr shows ids, never key bytes


def test_keyring_reloads_on_change_and_keeps_keys_on_a_bad_file(tmp_path: Path) -> None:
    path = capkeys.write_keys_file(tmp_path / "keys.json")
    ring = capkeys.KeyRing(path)
    seen: list[capkeys.KeySet] = []
    ring.on_change(seen.append)
    assert not ring.reload_if_changed()
    capkeys.rotate(path)
    assert ring.reload_if_changed(force=True)
    assert ring.keys.signing == 2 and seen[-1].signing == 2
    path.write_text("{not json")
    assert not ring.reload_if_changed(force=True)
    assert ring.keys.signing == 2 and set(ring.keys.keys) == {1, 2}  # the last good keys stay


def test_token_files_include_keys_and_a_non_root_user(tmp_path: Path) -> None:
    from emberfs.common import auth

    tokens = auth.write_token_files(tmp_path)
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    capkeys.load_keys_file(tmp_path / "keys.json")
    user = next(e for e in json.loads(tokens.read_text())["tokens"] if e["name"] == "user")
    assert user["uid"] != 0
    assert user["uid"] == (os.getuid() or auth.NON_ROOT_UID)
    assert capkeys.default_keys_path(tokens) == tmp_path / "keys.json"


def test_keyring_for(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(capkeys.KEYS_FILE_ENV, raising=False)
    assert capkeys.keyring_for(None, None) is None
    assert capkeys.keyring_for(None, tmp_path / "k.json") is None
    assert "ignored" in capsys.readouterr().err
    with pytest.raises(capkeys.KeysFileError, match="does not exist"):
        capkeys.keyring_for(tmp_path / "tokens.json", None)
    capkeys.write_keys_file(tmp_path / "keys.json")
    ring = capkeys.keyring_for(tmp_path / "tokens.json", None)
    assert ring is not None and ring.path == tmp_path / "keys.json"

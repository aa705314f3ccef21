"""Validation and splitting of EmberFS paths and names, shared by servers and clients.

Paths are absolute, '/'-separated UTF-8 strings. A name (one component) is 1..255
bytes with no '/' or NUL and is neither '.' nor '..'. Both sides check, so a bad
name fails fast in the client and can never reach the store through another client.
"""

from __future__ import annotations

from .errors import InvalidArgument, NameTooLong

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MAX_SYMLINK_DEPTH",
    "check_mode",
    "check_name",
    "join",
    "split_parent",
    "split_path",
]

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_SYMLINK_DEPTH = 40  # Linux's MAXSYMLINKS
MAX_MODE = 0o7777


def check_name(name: str) -> str:
    """Return name if it is a valid single component, else raise."""
    if not isinstance(name, str):
        raise InvalidArgument(f"name must be a string, not {type(name).__name__}")
    if name in ("", ".", ".."):
        raise InvalidArgument(f"invalid name {name!r}: empty, '.' and '..' are not names")
    if "/" in name or "\x00" in name:
        raise InvalidArgument(f"invalid name {name!r}: names cannot contain '/' or NUL")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"invalid name {name!r}: not encodable as UTF-8") from exc
    if size > MAX_NAME_BYTES:
        raise NameTooLong(f"name is {size} bytes; the limit is {MAX_NAME_BYTES}")
    return name


def split_path(path: str) -> list[str]:
    """Split an absolute path into validated components ('/' gives [])."""
    if not isinstance(path, str):
        raise InvalidArgument(f"path must be a string, not {type(path).__name__}")
    if not path.startswith("/"):
        raise InvalidArgument(f"path {path!r} is not absolute (must start with '/')")
    if "\x00" in path:
        raise InvalidArgument("path contains NUL")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"path {path!r} is not encodable as UTF-8") from exc
    if size > MAX_PATH_BYTES:
        raise NameTooLong(f"path is {size} bytes; the limit is {MAX_PATH_BYTES}")
    parts = [p for p in path.split("/") if p]
    for part in parts:
        check_name(part)
    return parts


def split_parent(path: str) -> tuple[list[str], str]:
    """Split into (parent components, last name); the root has no last name."""
    parts = split_path(path)
    if not parts:
        raise InvalidArgument("the root directory has no name and no parent")
    return parts[:-1], parts[-1]


def join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def check_mode(mode: int) -> int:
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= MAX_MODE:
        raise InvalidArgument(f"mode {mode!r} is outside 0..0o7777")
    return mode

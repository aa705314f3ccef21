"""Files that hold secrets (the tokens file, the capability keys file, token files):
reading one's JSON without leaking its bytes, writing one only its owner can read, and
telling whether others may read one.

auth.py and capkeys.py both keep secrets on disk; this is the one home of how, so
neither imports the other for it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from emberfs.common.errors import InvalidArgument

__all__ = ["group_or_world_readable", "read_secret_json", "write_private"]


def read_secret_json(path: str | os.PathLike[str], source: str, error: type[InvalidArgument]) -> Any:
    """The JSON document of a secrets file (tokens, keys); `error` says why not, with
    `source` and never a byte of the file (a JSON error names a position only)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{source}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno}") from None


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (0600), replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def group_or_world_readable(path: str | os.PathLike[str]) -> bool:
    """Whether anyone but the owner may read the file (worth a warning)."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False

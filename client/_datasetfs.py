"""What a dataset needs of a file system beyond the read calls of `RangeReader`: making
its directory, renaming the manifest into place (replacing), and file sizes from one
listing. A SyncClient has these calls; LocalFiles gets them from `os` (`os.replace` for
the rename), and its paths are made absolute so a dataset read in one working directory
opens in another (a DataLoader worker).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from .data import LocalFiles, RangeReader

__all__ = ["Names", "dataset_path", "names_of"]


class Names(Protocol):
    def makedirs(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...
    def remove(self, path: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...  # replaces dst
    def file_sizes(self, directory: str) -> dict[str, int]: ...  # one listing: name -> bytes


class _LocalNames:
    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def file_sizes(self, directory: str) -> dict[str, int]:
        with os.scandir(directory) as entries:
            return {e.name: e.stat().st_size for e in entries if e.is_file()}


class _ClientNames:
    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def makedirs(self, path: str) -> None:
        self.fs.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def remove(self, path: str) -> None:
        self.fs.remove(path)

    def rename(self, src: str, dst: str) -> None:
        self.fs.rename(src, dst)

    def file_sizes(self, directory: str) -> dict[str, int]:
        return {name: st.st_size for name, st in self.fs.listdir_attrs(directory)}


_CLIENT_CALLS = ("makedirs", "exists", "remove", "rename", "listdir_attrs")


def names_of(fs: RangeReader) -> Names:
    if isinstance(fs, LocalFiles):
        return _LocalNames()
    missing = [name for name in _CLIENT_CALLS if not callable(getattr(fs, name, None))]
    if missing:
        raise TypeError(f"{fs!r} cannot hold a dataset: it has no {', '.join(missing)} "
                        "(use a SyncClient or LocalFiles)")
    return _ClientNames(fs)


def dataset_path(fs: RangeReader, path: str) -> str:
    return os.path.abspath(path) if isinstance(fs, LocalFiles) else path

"""`ls` and `stat`: showing what the namespace holds."""

from __future__ import annotations

import argparse
import stat as _stat
import time

from emberfs.common.paths import join

from .._client import Client
from .._stat import StatResult
from ._base import CliContext, Command, for_each_path

__all__ = ["COMMANDS"]


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ns / 1e9))


async def _long_line(client: Client, path: str, name: str, st: StatResult) -> str:
    line = (
        f"{_stat.filemode(st.st_mode)} {st.st_nlink:>3} {st.st_uid:>5} {st.st_gid:>5} "
        f"{st.st_size:>12} {_when(st.st_mtime_ns)} {name}"
    )
    if _stat.S_ISLNK(st.st_mode):
        line += f" -> {await client.readlink(path)}"
    return line


# -- ls ---------------------------------------------------------------------------------


def _ls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", dest="long", action="store_true", help="long listing: mode, links, owner, size, mtime")
    p.add_argument("-R", dest="recursive", action="store_true", help="list subdirectories recursively")
    p.add_argument("paths", nargs="*", metavar="PATH", help="default: /")


async def _ls(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    paths = args.paths or ["/"]
    headers = len(paths) > 1 or args.recursive
    shown = 0

    async def show(path: str) -> int:
        nonlocal shown
        # As GNU ls: a symlink named on the command line is followed unless -l.
        st = await client.stat(path, follow_symlinks=not args.long)
        if not _stat.S_ISDIR(st.st_mode):
            ctx.print(await _long_line(client, path, path, st) if args.long else path)
            return 0
        if shown and headers:
            ctx.print()
        shown += 1
        return await _ls_dir(ctx, client, path, args, headers)

    return await for_each_path(ctx, "ls", paths, show)


async def _ls_dir(ctx: CliContext, client: Client, path: str, args: argparse.Namespace, header: bool) -> int:
    entries = await client.listdir_attrs(path)
    if header:
        ctx.print(f"{path}:")
    for name, st in entries:
        ctx.print(await _long_line(client, join(path, name), name, st) if args.long else name)
    if not args.recursive:
        return 0
    # Depth first in name order, like ls -R; symlinks to directories are not entered.
    # A subdirectory that fails (say, no permission) is reported and the walk goes on.
    subdirs = [join(path, name) for name, st in entries if _stat.S_ISDIR(st.st_mode)]

    async def descend(sub: str) -> int:
        ctx.print()
        return await _ls_dir(ctx, client, sub, args, True)

    return await for_each_path(ctx, "ls", subdirs, descend)


# -- stat -------------------------------------------------------------------------------

_KIND = {_stat.S_IFDIR: "directory", _stat.S_IFREG: "regular file", _stat.S_IFLNK: "symbolic link"}


def _stat_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-L", dest="follow", action="store_true", help="follow symlinks")
    p.add_argument("paths", nargs="+", metavar="PATH")


async def _stat_cmd(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()

    async def show(path: str) -> None:
        st = await client.stat(path, follow_symlinks=args.follow)
        target = await client.readlink(path) if _stat.S_ISLNK(st.st_mode) else None
        for line in _describe(path, st, target):
            ctx.print(line)

    return await for_each_path(ctx, "stat", args.paths, show)


def _describe(path: str, st: StatResult, target: str | None) -> list[str]:
    name = f"{path} -> {target}" if target is not None else path
    perms = f"{_stat.S_IMODE(st.st_mode):04o}/{_stat.filemode(st.st_mode)}"
    return [
        f"  File: {name}",
        f"  Type: {_KIND.get(_stat.S_IFMT(st.st_mode), 'unknown')}",
        f"  Size: {st.st_size:<12} Inode: {st.st_ino:<10} Links: {st.st_nlink}",
        f"Access: ({perms})  Uid: {st.st_uid}  Gid: {st.st_gid}",
        f"Layout: chunk_size={st.chunk_size} stripe={st.stripe} chains={list(st.chain_ids)}"
        f" truncate_version={st.truncate_version}",
        f"Access: {_full_time(st.st_atime_ns)}",
        f"Modify: {_full_time(st.st_mtime_ns)}",
        f"Change: {_full_time(st.st_ctime_ns)}",
    ]


def _full_time(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{frac:09d}"


COMMANDS = (
    Command("ls", "list directory contents", _ls_arguments, _ls),
    Command("stat", "show an entry's attributes and layout", _stat_arguments, _stat_cmd),
)

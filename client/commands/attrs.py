"""Commands that change attributes (chmod, chown) or show file-system totals (statfs)."""

from __future__ import annotations

import argparse

from ._base import CliContext, Command, for_each_path, octal_mode

__all__ = ["COMMANDS"]


def _chmod_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mode", type=octal_mode, metavar="MODE", help="octal, e.g. 755")
    p.add_argument("paths", nargs="+", metavar="PATH")


async def _chmod(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    return await for_each_path(ctx, "chmod", args.paths, lambda path: client.chmod(path, args.mode))


def owner(text: str) -> tuple[int, int]:
    """argparse type for UID[:GID] (numeric; an empty part, as in ':100', is left unchanged)."""
    uid_text, _, gid_text = text.partition(":")
    try:
        ids = tuple(int(part) if part else -1 for part in (uid_text, gid_text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid owner {text!r}: want numeric UID[:GID]") from None
    if any(not -1 <= i < 2**32 for i in ids) or ids == (-1, -1):
        raise argparse.ArgumentTypeError(f"invalid owner {text!r}")
    return ids[0], ids[1]


def _chown_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("owner", type=owner, metavar="UID[:GID]")
    p.add_argument("paths", nargs="+", metavar="PATH")


async def _chown(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    uid, gid = args.owner
    return await for_each_path(ctx, "chown", args.paths, lambda path: client.chown(path, uid, gid))


def _no_arguments(p: argparse.ArgumentParser) -> None:
    pass


async def _statfs(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    fs = await client.statfs()
    rows = [
        ("inodes", fs.inodes),
        ("files", fs.files),
        ("directories", fs.directories),
        ("symlinks", fs.symlinks),
        ("used bytes", fs.used_bytes),
        ("capacity bytes", fs.capacity_bytes),
        ("free bytes", fs.free_bytes),
    ]
    for label, value in rows:
        ctx.print(f"{label:<15}{value:>20}")
    return 0


COMMANDS = (
    Command("chmod", "change permission bits", _chmod_arguments, _chmod),
    Command("chown", "change owner and group (numeric ids)", _chown_arguments, _chown),
    Command("statfs", "show namespace totals and capacity", _no_arguments, _statfs),
)

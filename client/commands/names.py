"""Commands that add, remove and move names: mkdir, rmdir, rm, mv, ln, touch."""

from __future__ import annotations

import argparse
import stat as _stat

from emberfs.common.paths import join

from .._client import Client
from ._base import CliContext, Command, basename, for_each_path, octal_mode

__all__ = ["COMMANDS"]


async def _into_directory(client: Client, src: str, dst: str) -> str:
    """dst itself, or dst/<name of src> when dst is an existing directory (as mv and ln do)."""
    try:
        st = await client.stat(dst)
    except FileNotFoundError:
        return dst
    return join(dst, basename(src)) if _stat.S_ISDIR(st.st_mode) else dst


# -- mkdir / rmdir ----------------------------------------------------------------------


def _mkdir_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", dest="parents", action="store_true", help="make parents; no error if it exists")
    p.add_argument("-m", dest="mode", type=octal_mode, help="set this mode (octal), not masked by the umask")
    p.add_argument("paths", nargs="+", metavar="PATH")


async def _mkdir(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()

    async def make(path: str) -> None:
        if args.parents:
            await client.makedirs(path, exist_ok=True)
        else:
            await client.mkdir(path)
        if args.mode is not None:
            # mkdir(1) -m is exact, not umasked; the client always applies its umask,
            # so the mode is set in a second step (GNU mkdir does the same for special bits).
            await client.chmod(path, args.mode)

    return await for_each_path(ctx, "mkdir", args.paths, make)


def _paths_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH")


async def _rmdir(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    return await for_each_path(ctx, "rmdir", args.paths, client.rmdir)


# -- rm -----------------------------------------------------------------------------------


def _rm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "-R", dest="recursive", action="store_true", help="remove directories and their contents")
    p.add_argument("-f", dest="force", action="store_true", help="ignore missing paths")
    p.add_argument("paths", nargs="+", metavar="PATH")


async def _rm(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    remove = client.rmtree if args.recursive else client.remove

    async def rm(path: str) -> None:
        try:
            await remove(path)
        except FileNotFoundError:
            if not args.force:
                raise

    return await for_each_path(ctx, "rm", args.paths, rm)


# -- mv / ln ------------------------------------------------------------------------------


def _mv_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST", help="a new name, or an existing directory to move SRC into")


async def _mv(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()

    async def move(src: str) -> None:
        await client.rename(src, await _into_directory(client, src, args.dst))

    return await for_each_path(ctx, "mv", [args.src], move)


def _ln_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", dest="symbolic", action="store_true", help="make a symbolic link")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("link", metavar="LINK", help="the new name, or an existing directory to create it in")


async def _ln(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()

    async def link(target: str) -> None:
        name = await _into_directory(client, target, args.link)
        if args.symbolic:
            await client.symlink(target, name)
        else:
            await client.link(target, name)

    return await for_each_path(ctx, "ln", [args.target], link)


# -- touch ----------------------------------------------------------------------------------


async def _touch(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    return await for_each_path(ctx, "touch", args.paths, client.touch)


COMMANDS = (
    Command("mkdir", "make directories", _mkdir_arguments, _mkdir),
    Command("rmdir", "remove empty directories", _paths_arguments, _rmdir),
    Command("rm", "remove files (and with -r, directory trees)", _rm_arguments, _rm),
    Command("mv", "rename or move an entry", _mv_arguments, _mv),
    Command("ln", "make a hard link, or with -s a symbolic link", _ln_arguments, _ln),
    Command("touch", "create empty files or set their times to now", _paths_arguments, _touch),
)

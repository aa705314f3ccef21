"""`put`, `get` and `cat`: copying bytes between the local disk and EmberFS.

    emberfs put [-r] LOCAL... DEST      emberfs put - DEST        (stdin)
    emberfs get [-r] REMOTE... DEST     emberfs get REMOTE... -   (stdout)
    emberfs cat REMOTE...

put and get are one engine over two `Side`s (the local disk, the cluster) and follow
cp: DEST is an existing directory to copy into, or the new name of a single source; a
directory needs -r; inside a tree symlinks are copied as symlinks, a named symlink is
followed. A copy runs in three steps: directories first (parents before children),
then files and symlinks, `--jobs` at a time, then directory modes, deepest first (so
a read-only source directory does not stop its own children being written).

Memory stays bounded: a file moves in `PIECE`-byte pieces, so at most jobs x PIECE
bytes sit here (plus the client's own per-file chunk buffers). Modes: put sets each
remote file and directory to the local permission bits exactly; get creates local
ones with the remote bits less the umask, as cp without -p does.

Failures are one stderr line per path and the copy goes on (exit 1 at the end); a lost
cluster (ConnectionError, TimeoutError) ends the whole command, as in `for_each_path`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from ._base import CliContext, Command, for_each_path, positive_int, progress_arguments, progress_bar
from ._progress import Progress
from ._sides import DIR, FILE, SYMLINK, LocalSide, Node, Reader, RemoteSide, Side, Stream, Writer

__all__ = ["COMMANDS", "DEFAULT_JOBS", "PIECE"]

PIECE = 8 * 2**20  # bytes moved per read/write call: the memory bound of one transfer
DEFAULT_JOBS = 4  # files in flight at once
STDIO = "-"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Item:
    """One thing to make at the destination."""

    kind: str
    src: str
    dst: str
    size: int = 0
    mode: int = 0


# -- the engine ------------------------------------------------------------------------------


class _Copy:
    """One put or get: the plan, the per-path error reports, the progress bar."""

    def __init__(self, ctx: CliContext, command: str, src: Side, dst: Side, args: argparse.Namespace) -> None:
        self.ctx, self.command, self.src, self.dst, self.args = ctx, command, src, dst, args
        self.status = 0
        self.progress = progress_bar(ctx, args, None)

    def fail(self, exc: OSError | str) -> None:
        if isinstance(exc, str):
            print(f"emberfs: {self.command}: {exc}", file=self.ctx.err)
        else:
            self.ctx.report(self.command, exc)
        self.status = 1

    async def guarded(self, work: Awaitable[None]) -> bool:
        """Run work; report an OSError as one line. True if it succeeded."""
        try:
            await work
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            self.fail(exc)
            return False
        return True

    async def plan(self, src: str, dst: str) -> list[_Item]:
        node = await self.src.stat(src)
        if node.kind == FILE:
            return [_Item(FILE, src, dst, node.size, node.mode)]
        if node.kind != DIR:
            self.fail(f"{src}: not a regular file or directory; skipped")
            return []
        if not self.args.recursive:
            self.fail(f"-r not specified; omitting directory '{src}'")
            return []
        items = [_Item(DIR, src, dst, mode=node.mode)]
        await self._walk(src, dst, items)
        return items

    async def _walk(self, src: str, dst: str, items: list[_Item]) -> None:
        """Add what is under the directory src, parents before children (pre-order)."""
        try:
            children = await self.src.children(src)
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            self.fail(exc)  # the directory is still made, empty, as cp does
            return
        for name, node in children:
            s, d = self.src.join(src, name), self.dst.join(dst, name)
            if node.kind in (FILE, SYMLINK):
                items.append(_Item(node.kind, s, d, node.size, node.mode))
            elif node.kind == DIR:
                items.append(_Item(DIR, s, d, mode=node.mode))
                await self._walk(s, d, items)
            else:
                self.fail(f"{s}: not a regular file, directory or symlink; skipped")

    async def run(self, items: list[_Item]) -> None:
        failed: list[str] = []  # destination directories that could not be made

        def under_failed(item: _Item) -> bool:
            return any(item.dst.startswith(f.rstrip("/") + "/") for f in failed)

        dirs = [i for i in items if i.kind == DIR]
        for item in dirs:
            if under_failed(item) or not await self.guarded(self.dst.mkdir(item.dst)):
                failed.append(item.dst)
        work = [i for i in items if i.kind != DIR and not under_failed(i)]
        self.progress.total = sum(i.size for i in work if i.kind == FILE)
        await _bounded(self.args.jobs, work, lambda item: self.guarded(self._one(item)))
        for item in reversed(dirs):
            if item.dst not in failed:
                await self.guarded(self.dst.set_mode(item.dst, item.mode))

    async def _one(self, item: _Item) -> None:
        if item.kind == SYMLINK:
            await self.dst.symlink(await self.src.readlink(item.src), item.dst)
            return
        reader = await self.src.open_read(item.src)
        try:
            writer = await self.dst.open_write(item.dst)
            try:
                await _pump(reader, writer, self.progress)
            finally:
                await writer.close()
        finally:
            await reader.close()
        await self.dst.set_mode(item.dst, item.mode)


async def _pump(reader: Reader, writer: Writer, progress: Progress) -> None:
    while piece := await reader.read(PIECE):
        await writer.write(piece)
        progress.advance(len(piece))


async def _bounded(jobs: int, items: Iterable[T], run: Callable[[T], Awaitable[object]]) -> None:
    """run(item) for every item, `jobs` at a time; the first exception to escape one ends all."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:  # one iterator shared by the workers: each item runs once
            await run(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, jobs)):
                group.create_task(worker())
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None


async def _copy(ctx: CliContext, args: argparse.Namespace, command: str, src: Side, dst: Side) -> int:
    copy = _Copy(ctx, command, src, dst, args)
    dest: Node | None
    try:
        dest = await dst.stat(args.dest)
    except FileNotFoundError:
        dest = None
    into = dest is not None and dest.kind == DIR
    if len(args.sources) > 1 and not into:
        copy.fail(f"target '{args.dest}' is not a directory")
        return 1
    items: list[_Item] = []
    for source in args.sources:
        target = dst.join(args.dest, src.basename(source)) if into else args.dest
        try:
            items += await copy.plan(source, target)
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            copy.fail(exc)
    try:
        await copy.run(items)
    finally:
        copy.progress.close()
    return copy.status


# -- commands --------------------------------------------------------------------------------


def _transfer_arguments(what: str, where: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("-r", "-R", "--recursive", dest="recursive", action="store_true", help="copy directories")
        p.add_argument("-j", "--jobs", type=positive_int, default=DEFAULT_JOBS, metavar="N",
                       help=f"files in flight at once (default {DEFAULT_JOBS})")
        progress_arguments(p)
        p.add_argument("sources", nargs="+", metavar=what)
        p.add_argument("dest", metavar="DEST", help=where)

    return add


async def _put(ctx: CliContext, args: argparse.Namespace) -> int:
    remote = RemoteSide(await ctx.client())
    if STDIO in args.sources:
        if args.sources != [STDIO]:
            print("emberfs: put: '-' (stdin) must be the only source", file=ctx.err)
            return 2
        return await for_each_path(ctx, "put", [args.dest], lambda dest: _put_stdin(ctx, args, remote, dest))
    return await _copy(ctx, args, "put", LocalSide(), remote)


async def _put_stdin(ctx: CliContext, args: argparse.Namespace, remote: RemoteSide, dest: str) -> None:
    writer = await remote.open_write(dest)  # a directory: IsADirectoryError, reported as such
    progress = progress_bar(ctx, args, None)
    try:
        await _pump(Stream(sys.stdin.buffer, own=False), writer, progress)
    finally:
        progress.close()
        await writer.close()


async def _get(ctx: CliContext, args: argparse.Namespace) -> int:
    remote = RemoteSide(await ctx.client())
    if args.dest == STDIO:
        # Files to stdout one after another, in order, like cat.
        return await _to_stdout(ctx, args, "get", remote, args.sources)
    return await _copy(ctx, args, "get", remote, LocalSide())


async def _to_stdout(ctx: CliContext, args: argparse.Namespace, command: str, remote: RemoteSide,
                     paths: list[str]) -> int:
    ctx.out.flush()
    out = Stream(ctx.out.buffer, own=False)  # type: ignore[attr-defined]
    progress = progress_bar(ctx, args, None)

    async def one(path: str) -> None:
        reader = await remote.open_read(path)
        try:
            await _pump(reader, out, progress)
        finally:
            await reader.close()
            await out.close()  # flush what this file wrote before the next error line

    try:
        return await for_each_path(ctx, command, paths, one)
    finally:
        progress.close()


def _cat_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH")


async def _cat(ctx: CliContext, args: argparse.Namespace) -> int:
    return await _to_stdout(ctx, args, "cat", RemoteSide(await ctx.client()), args.paths)


COMMANDS = (
    Command("put", "copy local files (and with -r, directories) into EmberFS; '-' reads stdin",
            _transfer_arguments("LOCAL", "an existing directory to copy into, or a new name"), _put),
    Command("get", "copy EmberFS files (and with -r, directories) to local paths; DEST '-' is stdout",
            _transfer_arguments("REMOTE", "an existing local directory, a new name, or - for stdout"), _get),
    Command("cat", "write files' bytes to stdout", _cat_arguments, _cat),
)

"""`emberfs df [-h] [--json]`: capacity, bytes used and free, and inode counts.

The namespace numbers (inodes, files, used bytes as the sum of file lengths, one
replica) come from `Client.statfs`. Capacity and free space come from statfs too when
the metaserver fills them; while it reports 0 they are worked out from what the
storage targets report to the cluster manager (`Client.routing`): each chain stores
every byte once per replica, so a chain holds as much as its smallest target and has
used what its fullest target stores. Targets that share one disk (a local cluster)
each report that disk, so then the figure counts the disk once per chain.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from emberfs.proto import mgmt_pb2

from .._stat import StatFsResult
from ._base import CliContext, Command
from ._progress import format_bytes

__all__ = ["COMMANDS", "Usage", "format_usage", "usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    capacity_bytes: int
    used_bytes: int  # sum of file lengths (one replica)
    free_bytes: int
    capacity_source: str  # "metaserver", "targets", or "none" (nothing reported yet)
    inodes: int
    files: int
    directories: int
    symlinks: int


def usage(fs: StatFsResult, routing: mgmt_pb2.RoutingInfo | None) -> Usage:
    """The df figures from statfs, with capacity from the targets when statfs has none."""
    capacity, free, source = fs.capacity_bytes, fs.free_bytes, "metaserver"
    if not capacity:
        capacity, free, source = _from_targets(routing)
    return Usage(capacity, fs.used_bytes, free, source, fs.inodes, fs.files, fs.directories, fs.symlinks)


def _from_targets(routing: mgmt_pb2.RoutingInfo | None) -> tuple[int, int, str]:
    if routing is None:
        return 0, 0, "none"
    targets = {t.target_id: t for t in routing.targets}
    capacity = free = 0
    for chain in routing.chains:
        members = [targets[t.target_id] for t in chain.targets if t.target_id in targets]
        sizes = [t.capacity_bytes for t in members if t.capacity_bytes]
        if not sizes:
            continue
        chain_capacity = min(sizes)
        stored = max(t.used_bytes for t in members)
        capacity += chain_capacity
        free += max(0, chain_capacity - stored)
    return capacity, free, ("targets" if capacity else "none")


_HEADER = ("Filesystem", "Size", "Used", "Avail", "Use%", "Inodes", "Files", "Dirs", "Symlinks")


def format_usage(name: str, u: Usage, *, human: bool) -> list[str]:
    """A df-style table: a header and one line."""
    size = format_bytes if human else str
    percent = f"{-(-u.used_bytes * 100 // u.capacity_bytes)}%" if u.capacity_bytes else "-"  # rounded up, as df
    capacity = size(u.capacity_bytes) if u.capacity_bytes else "-"
    free = size(u.free_bytes) if u.capacity_bytes else "-"
    row = (name, capacity, size(u.used_bytes), free, percent, u.inodes, u.files, u.directories, u.symlinks)
    widths = [max(len(str(h)), len(str(v))) for h, v in zip(_HEADER, row, strict=True)]

    def line(cells: tuple[object, ...]) -> str:
        first = f"{cells[0]!s:<{widths[0]}}"
        return "  ".join([first, *(f"{c!s:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True))])

    return [line(_HEADER), line(row)]


def _arguments(p: argparse.ArgumentParser) -> None:
    # -h means human-readable, as in df(1), and --help still helps: a group made after
    # the parser switches to "resolve" takes the -h string from the help action.
    p.conflict_handler = "resolve"
    group = p.add_argument_group("df options")
    group.add_argument("-h", "--human-readable", dest="human", action="store_true", help="sizes in KiB, MiB, GiB ...")
    group.add_argument("--json", action="store_true", help="print the figures as JSON (always in bytes)")


async def _df(ctx: CliContext, args: argparse.Namespace) -> int:
    client = await ctx.client()
    fs = await client.statfs()
    routing = None if fs.capacity_bytes else await client.routing()
    u = usage(fs, routing)
    if args.json:
        ctx.print(json.dumps({"meta": ctx.meta, **asdict(u)}, indent=2))
    else:
        for text in format_usage(ctx.meta, u, human=args.human):
            ctx.print(text)
    return 0


COMMANDS = (Command("df", "show capacity, bytes used and free, and inode counts", _arguments, _df),)

"""`emberfs pack`: a local folder into a dataset of record shards; `emberfs shards`:
show or verify one.

    emberfs pack SRC_DIR DEST [--pattern GLOB]... [--jsonl] [--max-bytes SIZE] [--max-count N]
                 [--shuffle SEED] [--local] [--force] [--no-keys]
    emberfs shards info DEST [--local]
    emberfs shards verify DEST [--local]

pack takes every regular file under SRC_DIR whose name matches a --pattern (default:
all), recursively (symlinks to files are followed, to directories not), in sorted order
of their paths relative to SRC_DIR, one sample per file; with --jsonl one sample per
non-blank line of each `*.jsonl`/`*.json` file (each line must parse as JSON; the
sample is the line's bytes without its newline). --shuffle SEED writes the samples in a
seeded random order instead: a block-shuffled reader mixes only the blocks in its
window, so a folder sorted by class would otherwise give batches of few classes. Each
sample's key (its file's relative path, or `PATH:LINE`) goes into a keys file per shard
unless --no-keys. DEST is an EmberFS directory, or with --local a local one; it gets
`shard-NNNNN.rec` files and, last, `manifest.json` (`emberfs.client.shards`). Any
failure leaves DEST without a manifest and exits 1.

The work is blocking (a `SyncClient`, or `LocalFiles` with --local) and runs on a worker
thread, so the progress bar and Ctrl-C behave as in put and get.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fnmatch
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._sync import SyncClient
from ..data import LocalFiles, RangeReader, ShardError
from ..shards import MIN_MAX_BYTES, Manifest, ShardWriter, read_manifest, shard_problems
from ._base import CliContext, Command, positive_int, progress_arguments, progress_bar
from ._progress import Progress, format_bytes

__all__ = ["COMMANDS", "JSONL_PATTERNS", "json_lines", "parse_size", "samples", "source_files"]

JSONL_PATTERNS = ("*.jsonl", "*.json")
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MAX_WALK = 10_000_000  # directory entries pack looks at: a bound, not a limit anyone should reach


def parse_size(text: str) -> int:
    """argparse type: `256M`, `64K`, `1GiB`, `4096` -> bytes (powers of 1024)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, suffix = (t[:-1], t[-1]) if t and t[-1] in _SUFFIXES else (t, "")
    try:
        value = int(number) * _SUFFIXES[suffix]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 256M, 64K, 1G, 1048576)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a size must be positive, not {text!r}")
    return value


def source_files(src: str, patterns: Sequence[str]) -> list[tuple[str, str, int]]:
    """(path relative to src, local path, size) of every regular file under src whose name
    matches one of `patterns`, sorted by the relative path (with `/` separators)."""
    if not os.path.isdir(src):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", src)
    found = []
    walked = 0
    for top, dirs, names in os.walk(src):  # symlinks to directories are not entered (no cycles)
        walked += len(dirs) + len(names)
        if walked > _MAX_WALK:
            raise OSError(errno.E2BIG, f"more than {_MAX_WALK} entries under it", src)
        for name in names:
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                path = os.path.join(top, name)
                st = os.stat(path)  # follows a symlink to a file; a dangling one fails, naming it
                if os.path.isfile(path):
                    found.append((os.path.relpath(path, src).replace(os.sep, "/"), path, st.st_size))
    found.sort()
    return found


def json_lines(path: str, key: str) -> Iterator[tuple[str, bytes, int, int]]:
    """(key `KEY:LINE`, the line's bytes, bytes of the file consumed, the line's offset) for
    each non-blank line of a JSON-lines file; a blank line is no sample (JSON-lines readers
    skip them)."""
    used = offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            used += len(line)
            sample = line.rstrip(b"\r\n")
            if sample.strip():
                try:
                    json.loads(sample)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON value ({exc})") from None
                yield f"{key}:{number}", sample, used, offset
                used = 0
            offset += len(line)


def samples(
    files: Sequence[tuple[str, str, int]], jsonl: bool, shuffle: int | None
) -> Iterator[tuple[str, bytes, int]]:
    """(key, sample, source bytes consumed) in the order they go into the dataset.

    In file order, streaming; with a `shuffle` seed, first one (key, path, offset, length)
    per sample (every JSON line checked before anything is written), permuted by the seed,
    then each read on its own.
    """
    if shuffle is None:
        for key, path, _ in files:
            if jsonl:
                for line_key, sample, used, _ in json_lines(path, key):
                    yield line_key, sample, used
            else:
                with open(path, "rb") as f:
                    data = f.read()
                yield key, data, len(data)
        return
    if jsonl:
        spots = [(k, path, offset, len(line)) for key, path, _ in files for k, line, _, offset in json_lines(path, key)]
    else:
        spots = [(key, path, 0, -1) for key, path, _ in files]
    random.Random(shuffle).shuffle(spots)
    for key, path, offset, length in spots:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        yield key, data, len(data)


def _pack(fs: RangeReader, args: argparse.Namespace, files: list[tuple[str, str, int]], progress: Progress) -> Manifest:
    with ShardWriter(fs, args.dest, max_bytes=args.max_bytes, max_count=args.max_count, overwrite=args.force) as w:
        for key, sample, used in samples(files, args.jsonl, args.shuffle):
            w.write(sample, None if args.no_keys else key)
            progress.advance(used)
    return w.manifest


def _file_system(ctx: CliContext, local: bool) -> SyncClient | LocalFiles:
    if local:
        return LocalFiles()
    return SyncClient(ctx.meta, timeout=ctx.timeout, token=ctx.token, tls_ca=ctx.tls_ca)


async def _blocking(ctx: CliContext, local: bool, work: Callable[[RangeReader], Any]) -> Any:
    fs = _file_system(ctx, local)
    try:
        return await asyncio.to_thread(work, fs)
    finally:
        fs.close()


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _summary(m: Manifest) -> str:
    return (f"{_count(len(m.entries), 'shard')}, {_count(m.total_samples, 'sample')}, {m.total_bytes} bytes "
            f"({format_bytes(m.total_bytes)})")


def _report(ctx: CliContext, command: str, exc: OSError) -> None:
    if isinstance(exc, ShardError):  # its own words say more than strerror(EBADMSG or ENOENT)
        print(f"emberfs: {command}: {exc.filename}: {exc.strerror}", file=ctx.err)
    else:
        ctx.report(command, exc)


def _pack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC_DIR", help="a local directory")
    p.add_argument("dest", metavar="DEST", help="the dataset's directory on EmberFS (with --local: on local disk)")
    p.add_argument("--pattern", action="append", metavar="GLOB",
                   help="only files whose name matches (repeatable; default: every file, with --jsonl "
                        f"{' '.join(JSONL_PATTERNS)})")
    p.add_argument("--jsonl", action="store_true", help="one sample per line of JSON-lines files, not per file")
    p.add_argument("--max-bytes", type=parse_size, default=256 << 20, metavar="SIZE",
                   help="start a new shard before one would pass SIZE (default 256M)")
    p.add_argument("--max-count", type=positive_int, default=100_000, metavar="N",
                   help="samples per shard at most (default 100000)")
    p.add_argument("--shuffle", type=int, metavar="SEED",
                   help="write the samples in an order permuted by SEED, not sorted (keeps about 150 bytes per "
                        "sample in memory)")
    p.add_argument("--local", action="store_true", help="DEST is a local directory")
    p.add_argument("--force", action="store_true", help="replace a dataset already at DEST")
    p.add_argument("--no-keys", action="store_true", help="write no keys files (file names, line numbers)")
    progress_arguments(p)


async def _pack_command(ctx: CliContext, args: argparse.Namespace) -> int:
    patterns = args.pattern or (JSONL_PATTERNS if args.jsonl else ("*",))
    if args.max_bytes < MIN_MAX_BYTES:
        print(f"emberfs: pack: --max-bytes must be at least {MIN_MAX_BYTES} (a shard of one empty sample)",
              file=ctx.err)
        return 2
    try:
        files = source_files(args.src, patterns)
    except OSError as exc:
        ctx.report("pack", exc)
        return 1
    if not files:
        print(f"emberfs: pack: {args.src}: no file matches {' '.join(patterns)}; nothing written", file=ctx.err)
        return 1
    progress = progress_bar(ctx, args, sum(size for _, _, size in files))
    try:
        manifest = await _blocking(ctx, args.local, lambda fs: _pack(fs, args, files, progress))
    except (ConnectionError, TimeoutError):
        raise
    except FileExistsError:
        progress.close()
        print(f"emberfs: pack: {args.dest}: a dataset is already there (--force replaces it)", file=ctx.err)
        return 1
    except (OSError, ValueError) as exc:
        progress.close()
        if isinstance(exc, OSError):
            _report(ctx, "pack", exc)
        else:
            print(f"emberfs: pack: {exc}", file=ctx.err)
        print(f"emberfs: pack: {args.dest}: left without a manifest (incomplete)", file=ctx.err)
        return 1
    progress.close()
    ctx.print(f"packed {_count(len(files), 'file')} into {_summary(manifest)}")
    ctx.print(f"manifest: {manifest.path}")
    return 0


def _shards_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("info", "verify"),
                   help="info: the manifest's shards (checks they exist with their sizes); verify: read every "
                        "shard whole and check its CRC32C")
    p.add_argument("dest", metavar="DEST", help="the dataset's directory, or its manifest file")
    p.add_argument("--local", action="store_true", help="DEST is on local disk")
    progress_arguments(p)


def _info(ctx: CliContext, m: Manifest) -> None:
    ctx.print(f"{m.path}: {_summary(m)}")
    ctx.print(f"{'SHARD':<24} {'SAMPLES':>9} {'BYTES':>12}  CRC32C    KEYS")
    for e in m.entries:
        ctx.print(f"{e.path:<24} {e.count:>9} {e.size:>12}  {e.crc:08x}  {e.keys or '-'}")


async def _shards_command(ctx: CliContext, args: argparse.Namespace) -> int:
    command = f"shards {args.action}"

    def run(fs: RangeReader) -> tuple[Manifest, list[tuple[str, str]]]:
        manifest = read_manifest(fs, args.dest)
        if args.action == "info":
            return manifest, []
        progress = progress_bar(ctx, args, manifest.total_bytes)
        try:
            return manifest, shard_problems(fs, manifest, progress.advance)
        finally:
            progress.close()

    try:
        manifest, problems = await _blocking(ctx, args.local, run)
    except (ConnectionError, TimeoutError):
        raise
    except OSError as exc:
        _report(ctx, command, exc)
        return 1
    if args.action == "info":
        _info(ctx, manifest)
        return 0
    for path, why in problems:
        print(f"emberfs: {command}: {path}: {why}", file=ctx.err)
    if problems:
        print(f"emberfs: {command}: {len(problems)} of {len(manifest.entries)} shards fail", file=ctx.err)
        return 1
    ctx.print(f"ok: {_summary(manifest)}, every CRC32C matches")
    return 0


COMMANDS = (
    Command("pack", "pack a local folder (one sample per file, or per JSON line) into a dataset of record shards",
            _pack_arguments, _pack_command),
    Command("shards", "show a dataset's manifest (info) or read every shard and check it (verify)",
            _shards_arguments, _shards_command),
)

"""What every CLI subcommand is made of, and how it reports a failure.

A subcommand is a `Command`: a name, a help line, a function that adds its arguments
to an argparse parser, and an async `run(ctx, args) -> exit code`. Commands that talk
to the metaserver ask the context for a client (opened on first use, closed by the
CLI); commands that start processes (a future `local-cluster`) never do.

Failures on one path are reported as ONE stderr line and the command goes on with
its other paths, exiting 1 at the end, the way coreutils do:

    emberfs: rm: /nope: No such file or directory
"""

from __future__ import annotations

import argparse
import errno as _errno
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from .._client import Client
from .._retry import RetryPolicy
from ._progress import Progress

CONNECT_WAIT_S = 3.0
POLL_ATTEMPTS = 4  # about 0.3 s of retries per poll

__all__ = [
    "CONNECT_WAIT_S", "CliContext", "Command", "basename", "error_line", "for_each_path", "octal_mode", "positive_int",
    "progress_arguments", "progress_bar",
]


@dataclass
class CliContext:
    meta: str  # metaserver address, HOST:PORT
    timeout: float
    token: str | None = None  # None: the Client's default ($EMBERFS_TOKEN)
    tls_ca: str | None = None  # None: the Client's default ($EMBERFS_TLS_CA; else plaintext)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: Client | None = None

    async def client(self, *, polling: bool = False) -> Client:
        """The command's client. polling: for a loop that polls (wait, --watch): each
        call gives up after a few quick attempts, so the loop can say the metaserver
        is unreachable and poll again, instead of one call waiting out --timeout."""
        if self._client is None:
            retry = RetryPolicy(max_attempts=POLL_ATTEMPTS) if polling else None
            client = Client(self.meta, timeout=self.timeout, retry=retry, token=self.token, tls_ca=self.tls_ca)
            # Fail fast when nothing answers at all; once connected, calls ride out a
            # metaserver restart up to --timeout.
            # (A polling loop reports an unreachable metaserver itself.)
            await client.connect(wait=None if polling else min(self.timeout, CONNECT_WAIT_S))
            self._client = client
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def report(self, command: str, exc: OSError) -> None:
        print(error_line(command, exc), file=self.err)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[CliContext, argparse.Namespace], Awaitable[int]]
    aliases: tuple[str, ...] = ()


# Where the server's own words say more than strerror does ("invalid name 'a/b'", or
# for EACCES whether a mode bit or the token was missing, for EBADMSG why a shard is bad).
_DETAILED = {_errno.EINVAL, _errno.ENAMETOOLONG, _errno.EIO, _errno.EACCES, _errno.EBADMSG}


def error_line(command: str, exc: OSError) -> str:
    """`emberfs: CMD: PATH: reason` (PATH is `SRC -> DST` for two-path failures)."""
    parts = ["emberfs", command]
    if exc.filename is not None:
        where = str(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {exc.filename2}"
        parts.append(where)
    if exc.errno:
        reason = os.strerror(exc.errno)
        if exc.errno in _DETAILED and exc.strerror and exc.strerror != reason:
            reason += f" ({exc.strerror})"
    else:
        reason = str(exc)
    parts.append(reason)
    return ": ".join(parts)


async def for_each_path(
    ctx: CliContext, command: str, paths: Iterable[str], action: Callable[[str], Awaitable[int | None]]
) -> int:
    """Run action on each path; report each failure and return 1 if any failed.

    action may also return a nonzero status for failures it reported itself.

    A lost metaserver (ConnectionError, TimeoutError) ends the whole command instead:
    every remaining path would fail the same way.
    """
    status = 0
    for path in paths:
        try:
            status |= await action(path) or 0
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            ctx.report(command, exc)
            status = 1
    return status


def octal_mode(text: str) -> int:
    """argparse type for an octal mode such as 755 or 0o1777."""
    try:
        mode = int(text.removeprefix("0o"), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid octal mode {text!r}") from None
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError(f"mode {text!r} is outside 0..7777")
    return mode


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def positive_int(text: str) -> int:
    """argparse type for a count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a positive integer, not {text!r}")
    return value


def progress_arguments(p: argparse.ArgumentParser) -> None:
    """--progress and -q, read by `progress_bar`."""
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is no terminal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def progress_bar(ctx: CliContext, args: argparse.Namespace, total: int | None) -> Progress:
    """The command's progress bar on stderr: on a terminal unless -q, anywhere with --progress."""
    forced = getattr(args, "progress", False)
    quiet = getattr(args, "quiet", False)
    enabled = not quiet and (forced or ctx.err.isatty())
    return Progress(total, ctx.err, enabled=enabled, delay=0.0 if forced else 0.5)

"""`emberfs`, the command line: `emberfs [--meta HOST:PORT[,HOST:PORT...]] COMMAND ...`.

The parser is built from the subcommand registry (`emberfs.client.commands`); this
module only parses, runs the chosen command on an event loop, and turns what escapes
it into an exit status and at most one stderr line, never a traceback:

    0  success
    1  a file-system error (one line per failed path: `emberfs: ls: /x: No such file ...`)
    2  bad usage (argparse, a bad --meta list among it), an unreadable --token-file, or
       no metaserver could be reached in time
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from emberfs.common import eventloop
from emberfs.common.auth import TOKEN_FILE_ENV, read_token_file
from emberfs.common.errors import InvalidArgument
from emberfs.common.hostports import format_addresses, parse_address_list
from emberfs.common.tls import TLS_CA_ENV, TlsError, check_ca, tls_ca_from_env

from ._meta import metaservers_at
from .commands import COMMANDS, CliContext, Command, error_line

__all__ = ["build_parser", "main"]

DEFAULT_META = "127.0.0.1:9000"
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emberfs", description="Work with an EmberFS namespace.")
    parser.add_argument(
        "--meta",
        type=_meta_list,
        default=os.environ.get("EMBERFS_META", DEFAULT_META),
        metavar="HOST:PORT[,HOST:PORT...]",
        help="metaserver address; several that serve one cluster separated by commas: a call that one of them "
             f"does not answer goes to the next (default: $EMBERFS_META, else {DEFAULT_META})",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="bound on each call, retries included"
    )
    parser.add_argument(
        "--token-file", default=os.environ.get(TOKEN_FILE_ENV) or None, metavar="PATH",
        help="file holding the token of a cluster that requires one (default: $EMBERFS_TOKEN_FILE, else the "
             "token in $EMBERFS_TOKEN)",
    )
    parser.add_argument(
        "--tls-ca", default=tls_ca_from_env(), metavar="PEM",
        help=f"talk TLS to a cluster serving it, verifying the servers against this CA (default: ${TLS_CA_ENV})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, aliases=command.aliases, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run_command=command)
    return parser


def _meta_list(value: str) -> str:
    """argparse type of --meta (and $EMBERFS_META): the list, validated, as "a:1,b:2"."""
    try:
        return format_addresses(parse_address_list(value, what="--meta"))
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


async def _run(command: Command, ctx: CliContext, args: argparse.Namespace) -> int:
    try:
        return await command.run(ctx, args)
    finally:
        await ctx.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.run_command
    token = None
    if args.token_file is not None:
        try:
            token = read_token_file(args.token_file)
        except OSError as exc:
            print(f"emberfs: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
    if args.tls_ca is not None:
        try:
            check_ca(args.tls_ca)
        except TlsError as exc:
            print(f"emberfs: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
    ctx = CliContext(meta=args.meta, timeout=args.timeout, token=token, tls_ca=args.tls_ca)
    try:
        return eventloop.run(_run(command, ctx, args))
    except BrokenPipeError:  # a ConnectionError, so before that clause
        # `emberfs ls | head`: the reader left; say nothing more on a dead pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except TimeoutError:
        print(f"emberfs: {command.name}: {metaservers_at(args.meta)} did not answer in time", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConnectionError as exc:
        detail = str(exc.strerror or "").removeprefix("unavailable: ")
        if "not the cluster manager primary" in detail:  # a standby answered: say so, and what to do
            print(f"emberfs: {command.name}: {detail} (give every metaserver: --meta a:9000,b:9000)",
                  file=sys.stderr)
        else:
            print(f"emberfs: {command.name}: cannot reach {metaservers_at(args.meta)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except OSError as exc:
        print(error_line(command.name, exc), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Storage server configuration: a frozen, validated dataclass and its argparse flags.

Invariants: node_id is a u32 >= 1; 1 <= targets <= 99 (target_id = node_id*100 + k);
listen/advertise are HOST:PORT, meta a list of them (common/hostports.py); the
heartbeat interval is positive.

Tokens (`--tokens-file`, common/auth.py): the same file as the metaserver's (or one
with at least the tokens that call this server). It says which tokens this server
accepts, and its first server entry is the token this server presents to the
metaserver and to its chain peers. Without it the server accepts every caller and
sends no token, as before.

Capability keys (`--keys-file`, common/capkeys.py; with tokens only, default keys.json
beside the tokens file): the keys client Read and Write capabilities are checked
against (storage/access.py); the same file as the metaserver's, re-read when it changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import NoReturn

from emberfs.common.auth import TOKENS_FILE_ENV, TokenTable, load_tokens_file
from emberfs.common.capkeys import KEYS_FILE_ENV, KeyRing, keyring_for
from emberfs.common.errors import InvalidArgument
from emberfs.common.hostports import parse_address_list, parse_hostport
from emberfs.common.tls import ServerTls, add_tls_arguments, tls_from_args

__all__ = ["MAX_TARGETS", "StorageConfig", "build_parser", "config_from_args", "parse_hostport"]

MAX_TARGETS = 99


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    listen: str
    meta: str  # HOST:PORT[,HOST:PORT...]: the metaservers, any of which may be the cluster manager
    data_dir: str
    node_id: int
    targets: int = 1
    advertise: str | None = None  # None: the bound listen address
    heartbeat_interval_s: float = 1.0
    log_level: str = "INFO"
    bulk_port: int | None = 0  # the bulk data channel, on the listen host; 0 picks one, None: off
    bulk_stall_s: float = 30.0  # a bulk peer silent this long in the middle of a frame is cut off
    tokens: TokenTable | None = None  # None: no authentication (see the module docstring)
    tls: ServerTls | None = None  # --tls-cert/--tls-key (common/tls.py); None: plaintext
    tls_ca: str | None = None  # --tls-ca: verify the metaserver and peers; None: call them in plaintext
    keys: KeyRing | None = None  # capability keys (with tokens); None: no capability checks

    def __post_init__(self) -> None:
        parse_hostport(self.listen, what="--listen")
        parse_address_list(self.meta, what="--meta")
        if self.advertise is not None:
            parse_hostport(self.advertise, what="--advertise", allow_zero=False)
        if not self.data_dir:
            raise InvalidArgument("--data-dir must name a directory")
        if not isinstance(self.node_id, int) or not 1 <= self.node_id < 2**32:
            raise InvalidArgument(f"--node-id {self.node_id!r} must be in 1..{2**32 - 1}")
        if not isinstance(self.targets, int) or not 1 <= self.targets <= MAX_TARGETS:
            raise InvalidArgument(f"--targets {self.targets!r} must be in 1..{MAX_TARGETS}")
        if not self.heartbeat_interval_s > 0 or self.heartbeat_interval_s > 3600:
            raise InvalidArgument(f"--heartbeat-interval {self.heartbeat_interval_s} must be in (0, 3600] s")
        if self.bulk_port is not None and not (isinstance(self.bulk_port, int) and 0 <= self.bulk_port <= 65535):
            raise InvalidArgument(f"--bulk-port {self.bulk_port!r} must be in 0..65535 (or 'off')")
        if not 0 < self.bulk_stall_s <= 3600:
            raise InvalidArgument(f"--bulk-stall-timeout {self.bulk_stall_s} must be in (0, 3600] s")
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            raise InvalidArgument(f"--log-level {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")

    @property
    def meta_addresses(self) -> tuple[str, ...]:
        return parse_address_list(self.meta, what="--meta")

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level.upper()))


class _Parser(argparse.ArgumentParser):
    """Bad flags exit 1 (the storage server's one failure status), not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="emberfs-storage", description="EmberFS storage server (CRAQ chunk replicas)")
    p.add_argument("--listen", required=True, help="HOST:PORT to serve on; port 0 picks one")
    p.add_argument("--advertise", default=None, help="HOST:PORT peers and clients dial (default: the bound address)")
    p.add_argument("--meta", required=True, metavar="HOST:PORT[,HOST:PORT...]",
                   help="the metaservers (cluster manager): several when more than one serves the cluster; "
                        "registration, heartbeats and routing go to whichever is the manager")
    p.add_argument("--data-dir", required=True, help="directory holding the node id and the targets")
    p.add_argument("--node-id", type=int, required=True, help="this node's id (>= 1), fixed for the data dir")
    p.add_argument("--targets", type=int, default=1, help="targets (chunk stores) on this node, 1..99")
    p.add_argument("--heartbeat-interval", type=float, default=1.0, help="seconds between heartbeats")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--bulk-port", type=_bulk_port, default=0,
                   help="port of the bulk data channel on the listen host (0 picks one; 'off': chunk data "
                        "on gRPC only)")
    p.add_argument("--bulk-stall-timeout", type=float, default=30.0,
                   help="seconds a bulk peer may stop in the middle of a frame (or before its hello) before "
                        "it is disconnected")
    p.add_argument("--tokens-file", default=os.environ.get(TOKENS_FILE_ENV) or None, metavar="PATH",
                   help="JSON tokens file: require a valid token on every call (gRPC and bulk channel); its "
                        "first \"server\": true entry is this server's own token (default: $EMBERFS_TOKENS_FILE)")
    p.add_argument("--keys-file", default=None, metavar="PATH",
                   help="JSON capability keys, the metaserver's (with tokens; default: $" + KEYS_FILE_ENV + ", else "
                        "keys.json beside the tokens file); re-read when it changes or on SIGHUP")
    add_tls_arguments(p)
    return p


def _bulk_port(value: str) -> int | None:
    if value == "off":
        return None
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number or 'off'")
    return int(value)


def config_from_args(args: argparse.Namespace) -> StorageConfig:
    """The config; InvalidArgument on bad values, TlsError on unusable TLS files."""
    tls, tls_ca = tls_from_args(args)
    return StorageConfig(
        listen=args.listen, meta=args.meta, data_dir=args.data_dir, node_id=args.node_id,
        targets=args.targets, advertise=args.advertise,
        heartbeat_interval_s=args.heartbeat_interval, log_level=args.log_level, bulk_port=args.bulk_port,
        bulk_stall_s=args.bulk_stall_timeout,
        tokens=load_tokens_file(args.tokens_file, warn=True) if args.tokens_file else None,
        tls=tls, tls_ca=tls_ca, keys=keyring_for(args.tokens_file, args.keys_file),
    )

"""`emberfs-meta` / `python -m emberfs.metaserver`: parse flags, build the config, run."""

from __future__ import annotations

import argparse
import os
import sys

from emberfs.common.auth import TOKENS_FILE_ENV, TokenTable, TokensFileError, load_tokens_file
from emberfs.common.capkeys import KEYS_FILE_ENV, KeyRing, KeysFileError, keyring_for
from emberfs.common.errors import InvalidArgument
from emberfs.common.tls import TlsError, add_tls_arguments, tls_from_args

from .config import MetaConfig
from .server import run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emberfs-meta", description="EmberFS metadata server")
    parser.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT to serve on; port 0 picks one")
    parser.add_argument("--data-dir", default="", help="directory of the LMDB environment (the lmdb engine)")
    parser.add_argument("--engine", choices=("lmdb", "etcd"), default="lmdb",
                        help="where the namespace lives: lmdb (embedded, in --data-dir; the default) or etcd")
    parser.add_argument("--etcd", default="", metavar="HOST:PORT[,...]",
                        help="etcd endpoints (the etcd engine); several metaservers may share them")
    parser.add_argument("--etcd-prefix", default="emberfs/", help="key prefix of this file system in etcd")
    parser.add_argument("--etcd-max-txn-ops", type=int, default=128, metavar="N",
                        help="operations etcd allows in one transaction (its --max-txn-ops; default 128)")
    parser.add_argument("--advertise", default=None, metavar="HOST:PORT",
                        help="the address others dial for this metaserver (default: the bound --listen address); "
                             "named in 'the primary is at' hints")
    parser.add_argument("--manager-lease", type=int, default=2, metavar="S",
                        help="the etcd engine: seconds of the manager primary's lease; a standby metaserver "
                             "takes the cluster manager over within about this long (default 2)")
    parser.add_argument("--dir-mtime-skip", type=float, default=None, metavar="S",
                        help="do not rewrite a directory's times for a change within S seconds of its last one "
                             "(default 0 on lmdb, 0.1 on etcd)")
    parser.add_argument("--default-chunk-size", type=int, default=4 * 1024 * 1024,
                        help="chunk size of the root directory's layout (bytes, power of two)")
    parser.add_argument("--default-stripe", type=int, default=4,
                        help="stripe of the root directory's layout (chains per file)")
    parser.add_argument("--heartbeat-interval", type=float, default=1.0,
                        help="seconds between storage heartbeats the manager asks for")
    parser.add_argument("--heartbeat-timeout", type=float, default=5.0,
                        help="seconds of silence after which a storage node counts as dead")
    parser.add_argument("--gc-interval", type=float, default=1.0,
                        help="seconds between chunk GC rounds (deleted files' chunks)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--tokens-file", default=os.environ.get(TOKENS_FILE_ENV) or None, metavar="PATH",
                        help="JSON tokens file: require a valid token on every Meta and Mgmt call (see README, "
                             "Security); its first \"server\": true entry is the token the chunk GC sends "
                             f"(default: ${TOKENS_FILE_ENV})")
    parser.add_argument("--keys-file", default=None, metavar="PATH",
                        help="JSON capability keys (with tokens; default: $" + KEYS_FILE_ENV + ", else keys.json "
                             "beside the tokens file); re-read when it changes or on SIGHUP")
    parser.add_argument("--capability-ttl", type=float, default=60.0, metavar="S",
                        help="seconds a chunk-access capability lives: a permission change reaches open files "
                             "within this (default 60)")
    add_tls_arguments(parser)
    args = parser.parse_args(argv)
    try:
        tls, tls_ca = tls_from_args(args)
    except TlsError as exc:
        print(f"emberfs-meta: error: {exc}", file=sys.stderr)
        return 1
    tokens: TokenTable | None = None
    if args.tokens_file:
        try:
            tokens = load_tokens_file(args.tokens_file, warn=True)
        except TokensFileError as exc:
            print(f"emberfs-meta: error: {exc.message}", file=sys.stderr)
            return 1
    keys: KeyRing | None = None
    try:
        keys = keyring_for(args.tokens_file, args.keys_file)
    except KeysFileError as exc:
        print(f"emberfs-meta: error: {exc.message}", file=sys.stderr)
        return 1
    try:
        config = MetaConfig(
            data_dir=args.data_dir,
            listen=args.listen,
            default_chunk_size=args.default_chunk_size,
            default_stripe=args.default_stripe,
            heartbeat_interval_s=args.heartbeat_interval,
            heartbeat_timeout_s=args.heartbeat_timeout,
            gc_interval_s=args.gc_interval,
            log_level=args.log_level,
            tokens=tokens,
            tls=tls,
            tls_ca=tls_ca,
            keys=keys,
            capability_ttl_s=args.capability_ttl,
            engine=args.engine,
            etcd_endpoints=tuple(e.strip() for e in args.etcd.split(",") if e.strip()),
            etcd_prefix=args.etcd_prefix,
            etcd_max_txn_ops=args.etcd_max_txn_ops,
            dir_mtime_skip_s=args.dir_mtime_skip,
            manager_lease_s=args.manager_lease,
            advertise=args.advertise,
        )
    except InvalidArgument as exc:
        parser.error(exc.message)
    return run(config)


if __name__ == "__main__":
    sys.exit(main())

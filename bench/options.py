"""What one benchmark run measures: `BenchConfig`, and the argparse options that make it.

Shared by `emberfs bench` and `python -m emberfs.bench`, so both take the same options.
This module imports nothing heavy: the CLI builds its parser from it on every start.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = [
    "BenchConfig", "EVENT_LOOPS", "RANDOM_APIS", "TRANSPORTS", "WORKLOADS", "QUICK", "add_arguments",
    "config_from_args", "parse_size", "parse_size_range",
]

KIB, MIB = 1 << 10, 1 << 20
WORKLOADS = ("seq", "rand", "meta", "loader")
RANDOM_APIS = ("read_range", "pread")  # Client.read_range per read; EmberFile.pread on an open handle
TRANSPORTS = ("bulk", "grpc")  # Client(transport=...): chunk data on the bulk channel, or all on gRPC
EVENT_LOOPS = ("asyncio", "uvloop")  # EMBERFS_EVENT_LOOP of a cluster's servers, and its client's loop
_SUFFIXES = {"": 1, "B": 1, "K": KIB, "KIB": KIB, "M": MIB, "MIB": MIB, "G": 1 << 30, "GIB": 1 << 30}


@dataclass(frozen=True)
class BenchConfig:
    size_mib: int = 256  # the large file: sequential write/read, and random reads inside it
    chunk_sizes: tuple[int, ...] = (4 * MIB,)  # one LocalCluster per chunk size, side by side
    nodes: int = 3
    replicas: int = 3
    read_sizes: tuple[int, ...] = (4 * KIB, 64 * KIB, MIB)
    depths: tuple[int, ...] = (1, 32)  # requests in flight for the random and metadata phases
    ops: int = 20000  # bound on operations per random-read / metadata phase
    seconds: float = 3.0  # bound on time per random-read / metadata phase
    seq_piece: int = 4 * MIB  # request size of the baselines' sequential reads
    seq_inflight: int = 8  # their requests in flight
    seed: int = 1234  # the random offsets: one list, the same for every system
    workloads: tuple[str, ...] = WORKLOADS
    random_apis: tuple[str, ...] = RANDOM_APIS  # how EmberFS's random reads are issued
    # The first transport runs every workload; the others seq write, seq read (read_into)
    # and random reads through read_range (harness.py says why).
    transports: tuple[str, ...] = TRANSPORTS
    event_loops: tuple[str, ...] = ("asyncio",)  # one cluster per (chunk size, event loop)
    json_path: Path | None = None
    plot_path: Path | None = None
    keep_dir: Path | None = None  # run in this directory and keep it (logs), instead of a temp dir
    # The data loader's sample sizes: one dataset per (min, max) range, sizes uniform in it.
    loader_sizes: tuple[tuple[int, int], ...] = ((4 * KIB, 28 * KIB),)
    loader_mib: int = 1024  # dataset size per range: larger than the datasets' default cache
    loader_shards: int = 16  # record shards per dataset
    loader_cache_mib: int | None = None  # the datasets' cache_bytes in MiB; None: their default
    loader_workers: int = 2  # DataLoader workers
    loader_batch: int = 64  # DataLoader batch size
    quick: bool = False
    no_install: bool = False  # do not apt-get install nginx when it is missing
    auth: bool = False  # clusters require tokens (and so capabilities); the client holds the admin token
    meta_etcd: int = 0  # the metadata workload also on a metaserver over an etcd of this many members (0: not)
    meta_etcd_metaservers: int = 2  # metaservers sharing that etcd namespace (issue 19's goal: two)

    def as_dict(self) -> dict[str, object]:
        return {
            "size_mib": self.size_mib, "chunk_sizes": list(self.chunk_sizes), "nodes": self.nodes,
            "replicas": self.replicas, "read_sizes": list(self.read_sizes), "depths": list(self.depths),
            "ops": self.ops, "seconds": self.seconds, "seq_piece": self.seq_piece,
            "seq_inflight": self.seq_inflight, "seed": self.seed, "workloads": list(self.workloads),
            "random_apis": list(self.random_apis), "transports": list(self.transports),
            "event_loops": list(self.event_loops), "loader_sizes": [list(r) for r in self.loader_sizes],
            "loader_mib": self.loader_mib, "loader_shards": self.loader_shards,
            "loader_cache_mib": self.loader_cache_mib,
            "loader_workers": self.loader_workers, "loader_batch": self.loader_batch,
            "quick": self.quick, "auth": self.auth, "meta_etcd": self.meta_etcd,
            "meta_etcd_metaservers": self.meta_etcd_metaservers,
        }


# A smoke run: every workload and baseline, small and short (a few seconds of phases).
QUICK = BenchConfig(size_mib=8, ops=64, seconds=0.25, seq_inflight=4, loader_mib=8, loader_shards=4, quick=True)


def parse_size(text: str) -> int:
    """`4M`, `64K`, `1MiB`, `4194304` -> bytes."""
    t = text.strip().upper()
    number = t.rstrip("KMGIB")
    try:
        return int(number) * _SUFFIXES[t[len(number):]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 4M, 64K, 1048576)") from None


def parse_size_range(text: str) -> tuple[int, int]:
    """`4K-28K` -> (4096, 28672); one size `16K` -> (16384, 16384)."""
    low, sep, high = text.strip().partition("-")
    lo = parse_size(low)
    hi = parse_size(high) if sep else lo
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"invalid size range {text!r} (need 0 < MIN <= MAX, e.g. 4K-28K)")
    return lo, hi


def _range_list(text: str) -> tuple[tuple[int, int], ...]:
    ranges = tuple(parse_size_range(part) for part in text.split(",") if part.strip())
    if not ranges:
        raise argparse.ArgumentTypeError("empty list")
    return ranges


def _size_list(text: str) -> tuple[int, ...]:
    sizes = tuple(parse_size(part) for part in text.split(",") if part.strip())
    if not sizes:
        raise argparse.ArgumentTypeError("empty list")
    return sizes


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid list {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers, not {text!r}")
    return values


def _workloads(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; choose from {','.join(WORKLOADS)}")
    return names


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A parser of a comma list of names from `allowed`, in the order given, no repeats."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
        if not names or any(n not in allowed for n in names):
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}, not {text!r}")
        return names

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    p.add_argument("--size-mib", type=int, default=None, help=f"size of the large file (default {d.size_mib})")
    p.add_argument("--chunk-size", "--chunk-sizes", dest="chunk_sizes", type=_size_list, default=None,
                   metavar="SIZE[,SIZE...]",
                   help="chunk size of the cluster's files; a list (1M,4M) runs one cluster per size "
                        "side by side (default 4M, the metaserver's default)")
    p.add_argument("--nodes", type=int, default=d.nodes, help=f"storage servers (default {d.nodes})")
    p.add_argument("--replicas", type=int, default=d.replicas, help=f"replicas per chain (default {d.replicas})")
    p.add_argument("--read-sizes", type=_size_list, default=None, metavar="SIZE[,SIZE...]",
                   help="random read sizes (default 4K,64K,1M)")
    p.add_argument("--depths", type=_int_list, default=None, metavar="N[,N...]",
                   help="requests in flight for random reads and metadata ops (default 1,32)")
    p.add_argument("--ops", type=int, default=None, help=f"operations per phase at most (default {d.ops})")
    p.add_argument("--seconds", type=float, default=None, help=f"seconds per phase at most (default {d.seconds:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the random offsets")
    p.add_argument("--workloads", type=_workloads, default=d.workloads, metavar="W[,W...]",
                   help=f"which workloads (default {','.join(WORKLOADS)})")
    p.add_argument("--random-api", dest="random_apis", type=_choices(RANDOM_APIS), default=d.random_apis,
                   metavar="API[,API...]",
                   help="EmberFS random reads through read_range (by path), pread (one open handle), "
                        "or both (default)")
    p.add_argument("--transports", type=_choices(TRANSPORTS), default=d.transports, metavar="T[,T...]",
                   help="EmberFS client transports; the first runs every workload, the others seq write, "
                        "seq read (read_into) and random reads (read_range) (default bulk,grpc)")
    p.add_argument("--event-loops", type=_choices(EVENT_LOOPS), default=d.event_loops, metavar="L[,L...]",
                   help="event loops of the servers (EMBERFS_EVENT_LOOP) and of their client: one cluster "
                        "per chunk size and loop (default asyncio; uvloop needs 'emberfs[fast]')")
    p.add_argument("--loader-sizes", type=_range_list, default=None, metavar="MIN-MAX[,...]",
                   help="sample sizes of the data-loader workload, uniform in MIN-MAX (a single SIZE: all "
                        "alike); one dataset per range (default 4K-28K)")
    p.add_argument("--loader-mib", type=int, default=None,
                   help=f"data-loader dataset size per sample-size range, MiB (default {d.loader_mib})")
    p.add_argument("--loader-shards", type=int, default=None,
                   help=f"record shards per data-loader dataset (default {d.loader_shards})")
    p.add_argument("--loader-cache-mib", type=int, default=None,
                   help="the datasets' cache_bytes in MiB (default: the datasets' own default)")
    p.add_argument("--loader-workers", type=int, default=d.loader_workers,
                   help=f"DataLoader workers (default {d.loader_workers}; 0: in the loader process)")
    p.add_argument("--loader-batch", type=int, default=d.loader_batch,
                   help=f"DataLoader batch size (default {d.loader_batch})")
    p.add_argument("--json", dest="json_path", type=Path, default=None, metavar="FILE",
                   help="save machine info, parameters and every figure here")
    p.add_argument("--plot", dest="plot_path", type=Path, default=None, metavar="FILE",
                   help="draw a PNG bar chart here (needs matplotlib: pip install 'emberfs[bench]')")
    p.add_argument("--keep-dir", type=Path, default=None, metavar="DIR",
                   help="run in DIR and keep it (server logs) instead of a temporary directory")
    p.add_argument("--quick", action="store_true", help="a smoke run: small sizes, a few seconds")
    p.add_argument("--auth", action="store_true",
                   help="start the EmberFS clusters with tokens (local-cluster --auth): every chunk request then "
                        "carries a capability that the storage servers check")
    p.add_argument("--no-install", action="store_true",
                   help="do not install Debian's nginx-light when nginx is missing (its rows then say so)")
    p.add_argument("--meta-etcd", type=int, choices=(0, 1, 3), default=0, metavar="MEMBERS",
                   help="run the metadata workload also on a metaserver whose namespace is in a local etcd of "
                        "MEMBERS members (Debian's etcd-server; 0: not, the default)")
    p.add_argument("--meta-etcd-metaservers", type=int, default=2, metavar="N",
                   help="with --meta-etcd: metaservers sharing the etcd namespace, each with its own client "
                        "(default 2)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Options given on the command line win; --quick fills in the rest with small values."""
    base = QUICK if args.quick else BenchConfig()
    given = {
        name: getattr(args, name)
        for name in ("size_mib", "chunk_sizes", "read_sizes", "depths", "ops", "seconds", "loader_sizes", "loader_mib",
                     "loader_shards", "loader_cache_mib")
        if getattr(args, name) is not None
    }
    config = replace(
        base, **given, nodes=args.nodes, replicas=args.replicas, seed=args.seed, workloads=args.workloads,
        random_apis=args.random_apis, transports=args.transports, event_loops=args.event_loops,
        loader_workers=args.loader_workers, loader_batch=args.loader_batch,
        json_path=args.json_path, plot_path=args.plot_path, keep_dir=args.keep_dir, quick=args.quick,
        no_install=args.no_install, auth=args.auth, meta_etcd=args.meta_etcd,
        meta_etcd_metaservers=args.meta_etcd_metaservers,
    )
    if config.meta_etcd_metaservers < 1:
        raise SystemExit("emberfs bench: --meta-etcd-metaservers must be at least 1")
    if config.size_mib < 1:
        raise SystemExit("emberfs bench: --size-mib must be at least 1")
    if min(config.loader_mib, config.loader_batch, config.loader_shards) < 1 or config.loader_workers < 0:
        raise SystemExit("emberfs bench: --loader-mib, --loader-shards and --loader-batch must be positive, "
                         "--loader-workers >= 0")
    if config.loader_cache_mib is not None and config.loader_cache_mib < 0:
        raise SystemExit("emberfs bench: --loader-cache-mib must not be negative")
    if min(lo for lo, _ in config.loader_sizes) < 8:
        raise SystemExit("emberfs bench: loader samples need at least 8 bytes (each starts with its number)")
    if max(config.read_sizes) > config.size_mib * MIB:
        raise SystemExit("emberfs bench: a read size is larger than the file")
    return config

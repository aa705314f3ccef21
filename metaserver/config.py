"""Configuration of the metadata server: one frozen, validated record.

Every value is checked once, in `__post_init__`, so the rest of the server can trust
it. The layout bounds (`check_chunk_size`, `check_stripe`) are also what requests
are validated against, so a directory default and a per-file choice obey one rule.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from emberfs.common.auth import TokenTable
from emberfs.common.capkeys import KeyRing
from emberfs.common.errors import InvalidArgument
from emberfs.common.tls import ServerTls

__all__ = [
    "MAX_CHUNK_SIZE",
    "MAX_STRIPE",
    "MIN_CHUNK_SIZE",
    "MetaConfig",
    "check_chunk_size",
    "check_stripe",
    "parse_listen",
]

MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * 1024 * 1024
MAX_STRIPE = 256
MAX_GC_INTERVAL_S = 86400.0
MAX_CAPABILITY_TTL_S = 86400.0  # a day: revoking permission must bite within some bound
MIN_MAP_SIZE = 64 * 1024  # LMDB needs a handful of pages; tests start this small
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_chunk_size(chunk_size: int) -> int:
    """A chunk size is a power of two in 64 KiB..64 MiB."""
    if (
        not isinstance(chunk_size, int)
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
        or chunk_size & (chunk_size - 1)
    ):
        raise InvalidArgument(
            f"chunk_size {chunk_size!r} must be a power of two in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}"
        )
    return chunk_size


def check_stripe(stripe: int) -> int:
    if not isinstance(stripe, int) or not 1 <= stripe <= MAX_STRIPE:
        raise InvalidArgument(f"stripe {stripe!r} must be in 1..{MAX_STRIPE}")
    return stripe


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "HOST:PORT" (IPv6 hosts in brackets); port 0 lets the OS choose."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise InvalidArgument(f"listen address {listen!r} is not HOST:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise InvalidArgument(f"listen port {port} is outside 0..65535")
    return host, port


ENGINES = ("lmdb", "etcd")
# A takeover beyond the manager lease: etcd's expiry check, the standby's poll, loading the
# chain table, a storage server's move to the new primary.
TAKEOVER_SLACK_S = 1.0


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """Settings of one metaserver. Invalid values raise InvalidArgument."""

    data_dir: str
    listen: str = "127.0.0.1:9000"
    default_chunk_size: int = 4 * 1024 * 1024
    default_stripe: int = 4
    idem_ttl_s: float = 600.0          # how long a retry can still get its first reply
    max_list_page: int = 10_000
    default_list_page: int = 1_000
    map_size: int = 1 << 30            # initial LMDB map; doubled on demand
    max_map_size: int = 1 << 40        # growth stops here with NoSpace
    heartbeat_interval_s: float = 1.0  # what the manager asks storage servers to beat at
    heartbeat_timeout_s: float = 5.0   # silence after which a node counts as dead
    gc_interval_s: float = 1.0         # pause between chunk GC rounds
    log_level: str = "INFO"
    # Required tokens (--tokens-file, common/auth.py); None: every caller is trusted
    # with the identity its request header names, as before.
    tokens: TokenTable | None = None
    # TLS (--tls-cert/--tls-key, common/tls.py): None serves plaintext. tls_ca: the CA the
    # GC verifies storage servers with (--tls-ca); None calls them in plaintext.
    tls: ServerTls | None = None
    tls_ca: str | None = None
    # Capability keys (--keys-file, common/capkeys.py): with tokens, Open and friends hand
    # out capabilities signed with the signing key, valid capability_ttl_s seconds.
    keys: KeyRing | None = None
    capability_ttl_s: float = 60.0
    # The namespace's engine (docs/ARCHITECTURE.md, "Metadata engines"): "lmdb" in data_dir,
    # or "etcd" at etcd_endpoints under the key prefix etcd_prefix.
    engine: str = "lmdb"
    etcd_endpoints: tuple[str, ...] = ()
    etcd_prefix: str = "emberfs/"
    etcd_max_txn_ops: int = 128  # etcd's --max-txn-ops: operations one transaction may hold
    # A directory's mtime is not rewritten for an entry added or removed within this long
    # of its last change (None: 0 on LMDB, 0.1 s on etcd, where every rewrite of a
    # directory inode conflicts with each create racing in it; JuiceFS skips the same way).
    dir_mtime_skip_s: float | None = None
    # The etcd engine's manager election (mgmt/primary.py): the primary's lease in whole
    # seconds. A standby takes over within about this long after the primary dies, and
    # storage leases (the heartbeat timeout) must outlast that takeover.
    manager_lease_s: int = 2
    # The address other processes dial for this metaserver (None: the bound listen
    # address); the primary record names it, so a "the primary is at" hint is usable
    # when the metaserver listens on 0.0.0.0.
    advertise: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InvalidArgument(f"engine {self.engine!r}: choose {' or '.join(ENGINES)}")
        if self.engine == "etcd":
            if not self.etcd_endpoints:
                raise InvalidArgument("the etcd engine needs etcd endpoints (--etcd HOST:PORT[,HOST:PORT...])")
            for endpoint in self.etcd_endpoints:
                parse_listen(endpoint)
            if not self.etcd_prefix or not self.etcd_prefix.endswith("/"):
                raise InvalidArgument(f"etcd_prefix {self.etcd_prefix!r} must be non-empty and end with '/'")
            if not isinstance(self.etcd_max_txn_ops, int) or self.etcd_max_txn_ops < 16:
                raise InvalidArgument(f"etcd_max_txn_ops {self.etcd_max_txn_ops!r} must be at least 16")
            if not isinstance(self.manager_lease_s, int) or not 1 <= self.manager_lease_s <= 60:
                raise InvalidArgument(f"manager_lease_s {self.manager_lease_s!r} must be whole seconds in 1..60")
            if not self.manager_lease_s + self.heartbeat_interval_s + TAKEOVER_SLACK_S <= self.heartbeat_timeout_s:
                raise InvalidArgument(
                    f"the heartbeat timeout ({self.heartbeat_timeout_s:g} s) must be at least the manager lease "
                    f"({self.manager_lease_s} s) plus the heartbeat interval ({self.heartbeat_interval_s:g} s) "
                    f"plus {TAKEOVER_SLACK_S:g} s: storage servers must keep serving while a standby takes the "
                    "manager over")
        elif not isinstance(self.data_dir, str) or not self.data_dir:
            raise InvalidArgument("data_dir must be a non-empty path")
        parse_listen(self.listen)
        if self.advertise is not None:
            host, port = parse_listen(self.advertise)
            if not host or port == 0 or host in ("0.0.0.0", "::"):
                raise InvalidArgument(f"advertise {self.advertise!r} must be a HOST:PORT others can dial")
        check_chunk_size(self.default_chunk_size)
        check_stripe(self.default_stripe)
        if not self.idem_ttl_s > 0:
            raise InvalidArgument(f"idem_ttl_s {self.idem_ttl_s!r} must be positive")
        if not isinstance(self.max_list_page, int) or self.max_list_page < 1:
            raise InvalidArgument(f"max_list_page {self.max_list_page!r} must be >= 1")
        if not isinstance(self.default_list_page, int) or not 1 <= self.default_list_page <= self.max_list_page:
            raise InvalidArgument(
                f"default_list_page {self.default_list_page!r} must be in 1..max_list_page"
            )
        if not isinstance(self.map_size, int) or self.map_size < MIN_MAP_SIZE:
            raise InvalidArgument(f"map_size {self.map_size!r} must be >= {MIN_MAP_SIZE}")
        if not isinstance(self.max_map_size, int) or self.max_map_size < self.map_size:
            raise InvalidArgument(f"max_map_size {self.max_map_size!r} must be >= map_size")
        if (
            not self.heartbeat_interval_s > 0
            or not self.heartbeat_timeout_s > self.heartbeat_interval_s
            or not math.isfinite(self.heartbeat_timeout_s)
        ):
            raise InvalidArgument("need 0 < heartbeat_interval_s < heartbeat_timeout_s, both finite")
        if not (isinstance(self.gc_interval_s, (int, float)) and 0 < self.gc_interval_s <= MAX_GC_INTERVAL_S):
            raise InvalidArgument(f"gc_interval_s {self.gc_interval_s!r} must be in (0, {MAX_GC_INTERVAL_S}]")
        if not (isinstance(self.capability_ttl_s, (int, float)) and 1 <= self.capability_ttl_s <= MAX_CAPABILITY_TTL_S):
            raise InvalidArgument(
                f"capability_ttl_s {self.capability_ttl_s!r} must be in [1, {MAX_CAPABILITY_TTL_S:g}]"
            )
        if self.dir_mtime_skip_s is not None and not 0 <= self.dir_mtime_skip_s <= 60:
            raise InvalidArgument(f"dir_mtime_skip_s {self.dir_mtime_skip_s!r} must be in [0, 60]")
        if self.log_level.upper() not in _LOG_LEVELS:
            raise InvalidArgument(f"log_level {self.log_level!r} is not one of {_LOG_LEVELS}")
        object.__setattr__(self, "log_level", self.log_level.upper())

    @property
    def dir_mtime_skip_ns(self) -> int:
        skip = self.dir_mtime_skip_s
        if skip is None:
            skip = 0.1 if self.engine == "etcd" else 0.0
        return int(skip * 1e9)

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))

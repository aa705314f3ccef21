"""HOST:PORT and lists of them (`HOST:PORT[,HOST:PORT...]`): one parser for every flag,
option and variable that names servers, so each refuses bad input with the same words.

A list names the metaservers of one cluster: with the etcd engine several serve one
namespace, and callers fail over between them (common/failover.py). Its order matters
(the cluster manager is looked for first at the first address), so it is kept; an
address named twice is refused rather than silently tried twice per round.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import InvalidArgument

__all__ = ["format_addresses", "parse_address_list", "parse_hostport"]

# A DNS name or IPv4 address, or an IPv6 address in brackets: what a gRPC target and a
# socket bind both take. Anything else (a ";" typed for a ",", spaces) is a typo.
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.%]+\]")


def parse_hostport(value: str, *, what: str = "address", allow_zero: bool = True) -> tuple[str, int]:
    """Split "HOST:PORT" (an IPv6 host in brackets); refuse anything else with a message
    naming `what` (the flag)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not port_text.isdigit():
        raise InvalidArgument(f"{what} {value!r} is not HOST:PORT")
    port = int(port_text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise InvalidArgument(f"{what} port {port} is outside {0 if allow_zero else 1}..65535")
    return host, port


def parse_address_list(value: str | Sequence[str], *, what: str = "metaserver address") -> tuple[str, ...]:
    """The dialable addresses of "HOST:PORT[,HOST:PORT...]" (or of a sequence of
    HOST:PORT strings), in order, stripped of whitespace around the commas.

    InvalidArgument, naming `what`, for an empty list or entry, an entry that is not
    HOST:PORT with a port in 1..65535, or an address given twice."""
    text = value if isinstance(value, str) else ",".join(value)
    if not text.strip():
        raise InvalidArgument(f"{what}: no address given (want HOST:PORT[,HOST:PORT...])")
    addresses: list[str] = []
    seen: dict[tuple[str, int], str] = {}
    for raw in text.split(","):
        address = raw.strip()
        if not address:
            raise InvalidArgument(f"{what} {text!r} has an empty entry (want HOST:PORT[,HOST:PORT...])")
        host, port = parse_hostport(address, what=what, allow_zero=False)
        key = (host.lower(), port)
        if key in seen:
            raise InvalidArgument(f"{what} {text!r} names {address} twice")
        seen[key] = address
        addresses.append(address)
    return tuple(addresses)


def format_addresses(addresses: Sequence[str]) -> str:
    """The list as one flag value: "a:1,b:2" (what parse_address_list reads back)."""
    return ",".join(addresses)

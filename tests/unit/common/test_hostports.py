"""The one parser of HOST:PORT lists (--meta, $EMBERFS_META, fsspec, Client, storage)."""

from __future__ import annotations

import pytest

from emberfs.common import errors as e
from emberfs.common.hostports import format_addresses, parse_address_list, parse_hostport

GOOD = [
    # value, addresses
    ("127.0.0.1:9000", ("127.0.0.1:9000",)),
    ("a:1,b:2", ("a:1", "b:2")),
    ("a:1 , b:2", ("a:1", "b:2")),
    ("  a:1,\tb:2  ", ("a:1", "b:2")),
    ("b:2,a:1", ("b:2", "a:1")),  # order kept: the manager is looked for first at the first
    ("[::1]:9000,127.0.0.1:9000", ("[::1]:9000", "127.0.0.1:9000")),
    ("meta-0.svc:65535,meta-1.svc:1", ("meta-0.svc:65535", "meta-1.svc:1")),
    ("a:9000,a:9001", ("a:9000", "a:9001")),  # same host, other port: two servers
    (["a:1", "b:2"], ("a:1", "b:2")),
    (("a:1",), ("a:1",)),
]


@pytest.mark.parametrize(("value", "addresses"), GOOD)
def test_good_lists(value, addresses) -> None:
    assert parse_address_list(value) == addresses
    assert parse_address_list(format_addresses(addresses)) == addresses


BAD = [
    # value, words the message must hold
    ("", "no address given"),
    ("   ", "no address given"),
    ([], "no address given"),
    ("a:1,", "empty entry"),
    (",a:1", "empty entry"),
    ("a:1,,b:2", "empty entry"),
    ("a:1, ,b:2", "empty entry"),
    ("a", "is not HOST:PORT"),
    ("a:1,b", "'b' is not HOST:PORT"),
    (":9000", "is not HOST:PORT"),
    ("a:", "is not HOST:PORT"),
    ("a:x", "is not HOST:PORT"),
    ("a:-1", "is not HOST:PORT"),
    ("a:0", "outside 1..65535"),  # port 0 is for listening, not for dialling
    ("a:65536", "outside 1..65535"),
    ("a:1,a:1", "names a:1 twice"),
    ("a:1, a:1", "names a:1 twice"),
    ("A:1,a:01", "twice"),  # host names are case-blind, ports are numbers
    ("a:1;b:2", "is not HOST:PORT"),
]


@pytest.mark.parametrize(("value", "words"), BAD)
def test_bad_lists_are_refused_naming_the_flag(value, words) -> None:
    with pytest.raises(e.InvalidArgument) as info:
        parse_address_list(value, what="--meta")
    assert words in info.value.message and "--meta" in info.value.message


@pytest.mark.parametrize(
    ("value", "allow_zero", "result"),
    [("h:0", True, ("h", 0)), ("h:80", False, ("h", 80)), ("[::1]:1", False, ("[::1]", 1))],
)
def test_hostport(value, allow_zero, result) -> None:
    assert parse_hostport(value, allow_zero=allow_zero) == result


def test_hostport_refuses_port_zero_when_dialling() -> None:
    with pytest.raises(e.InvalidArgument, match="--x port 0 is outside 1..65535"):
        parse_hostport("h:0", what="--x", allow_zero=False)


@pytest.mark.parametrize("value", ["a b:1", "a:1:2", "a:1,b c:2", "[zz]:1"])
def test_hosts_that_cannot_be_dialled_are_refused(value) -> None:
    with pytest.raises(e.InvalidArgument, match="is not HOST:PORT"):
        parse_address_list(value)

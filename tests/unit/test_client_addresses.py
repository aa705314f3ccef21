"""Every client entry point reads one metaserver address or several through the one
parser (common/hostports.py), and refuses a bad list before any traffic."""

from __future__ import annotations

import pickle

import pytest

from emberfs.client import Client, SyncClient
from emberfs.client.fsspec import EmberFileSystem

GOOD = [
    ("127.0.0.1:9000", "127.0.0.1:9000"),
    ("a:1, b:2", "a:1,b:2"),
    (["a:1", "b:2"], "a:1,b:2"),
    (("b:2", "a:1"), "b:2,a:1"),
]
BAD = ["", "a:1,,b:2", "a:1,a:1", "a", "a:0", "a:1;b:2"]


@pytest.mark.parametrize(("given", "address"), GOOD)
def test_client_and_sync_client_take_lists(given, address) -> None:
    assert Client(given).address == address
    sync = SyncClient(given)
    try:
        assert sync.address == address
        assert pickle.loads(pickle.dumps(sync)).address == address
    finally:
        sync.close()


@pytest.mark.parametrize("given", BAD)
def test_bad_lists_are_value_errors(given) -> None:
    with pytest.raises(ValueError, match="metaserver address"):
        Client(given)
    with pytest.raises(ValueError):
        SyncClient(given)
    with pytest.raises(ValueError):
        EmberFileSystem(address=given or ",", skip_instance_cache=True)


def test_fsspec_reads_lists_from_options_urls_and_the_environment(monkeypatch) -> None:
    fs = EmberFileSystem(address="a:1, b:2", skip_instance_cache=True)
    assert fs.address == "a:1,b:2" and fs.unstrip_protocol("/x") == "emberfs://a:1,b:2/x"
    get = EmberFileSystem._get_kwargs_from_urls
    assert get("emberfs://a:1,b:2/data/x") == {"address": "a:1,b:2"}
    assert get("emberfs://a:1/data/x") == {"host": "a", "port": 1}  # one address: as before
    with pytest.raises(ValueError, match="twice"):
        get("emberfs://a:1,a:1/x")
    assert EmberFileSystem._strip_protocol("emberfs://a:1,b:2/data/x") == "/data/x"
    monkeypatch.setenv("EMBERFS_META", "c:3,d:4")
    assert EmberFileSystem(skip_instance_cache=True).address == "c:3,d:4"

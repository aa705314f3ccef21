"""MetaConfig validation, and the `python -m emberfs.metaserver` process contract."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import grpc
import pytest

from emberfs.common.errors import InvalidArgument
from emberfs.metaserver.config import MetaConfig
from emberfs.proto import meta_pb2, meta_pb2_grpc


def test_defaults() -> None:
    config = MetaConfig(data_dir="/d")
    assert (config.listen, config.default_chunk_size, config.default_stripe) == ("127.0.0.1:9000", 4194304, 4)
    assert (config.idem_ttl_s, config.max_list_page, config.default_list_page) == (600, 10000, 1000)
    assert (config.map_size, config.heartbeat_interval_s, config.heartbeat_timeout_s) == (1 << 30, 1.0, 5.0)
    assert MetaConfig(data_dir="/d", log_level="debug").log_level == "DEBUG"
    with pytest.raises(AttributeError):
        config.listen = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [
        {"data_dir": ""},
        {"listen": "nohost"},
        {"listen": "127.0.0.1:70000"},
        {"listen": ":80"},
        {"default_chunk_size": 32 * 1024},
        {"default_chunk_size": 128 * 1024 * 1024},
        {"default_chunk_size": 3 * 1024 * 1024},
        {"default_stripe": 0},
        {"default_stripe": 257},
        {"idem_ttl_s": 0},
        {"max_list_page": 0},
        {"default_list_page": 20000},
        {"map_size": 1024},
        {"max_map_size": 1 << 20, "map_size": 1 << 21},
        {"heartbeat_interval_s": 5.0, "heartbeat_timeout_s": 1.0},
        {"log_level": "LOUD"},
        {"engine": "sqlite"},
        {"engine": "etcd"},  # no endpoints
        {"engine": "etcd", "etcd_endpoints": ("nohost",)},
        {"engine": "etcd", "etcd_endpoints": ("127.0.0.1:2379",), "etcd_prefix": "noslash"},
        {"engine": "etcd", "etcd_endpoints": ("127.0.0.1:2379",), "etcd_max_txn_ops": 4},
    ],
)
def test_invalid_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        MetaConfig(**{"data_dir": "/d", **overrides})


def test_the_etcd_engine_needs_no_data_dir() -> None:
    config = MetaConfig(data_dir="", engine="etcd", etcd_endpoints=("127.0.0.1:2379", "127.0.0.1:2381"))
    assert config.etcd_prefix == "emberfs/" and config.etcd_max_txn_ops == 128


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:9000", "localhost:1"])
def test_valid_listen(listen: str) -> None:
    assert MetaConfig(data_dir="/d", listen=listen).listen == listen


def _start(data_dir: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emberfs.metaserver", "--listen", "127.0.0.1:0", "--data-dir", data_dir, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_process_prints_address_serves_and_stops_on_sigterm(tmp_path: Any) -> None:
    started = time.monotonic()
    proc = _start(str(tmp_path / "meta"), "--default-stripe", "3")
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("emberfs-meta listening on 127.0.0.1:")
        assert time.monotonic() - started < 5
        address = line.split()[-1]
        assert int(address.rsplit(":", 1)[1]) > 0
        with grpc.insecure_channel(address) as channel:
            stub = meta_pb2_grpc.MetaStub(channel)
            made = stub.Mkdir(meta_pb2.MkdirRequest(path="/x", mode=0o755), timeout=5)
            assert made.inode.layout.stripe == 3
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line on stdout; logs go to stderr
    assert "stopped" in err


def test_bad_flags_exit_nonzero(tmp_path: Any) -> None:
    proc = _start(str(tmp_path / "meta"), "--default-chunk-size", "1000")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and "chunk_size" in err


def test_taken_port_fails_cleanly(tmp_path: Any) -> None:
    first = _start(str(tmp_path / "a"))
    try:
        address = first.stdout.readline().split()[-1]  # type: ignore[union-attr]
        second = subprocess.run(
            [sys.executable, "-m", "emberfs.metaserver", "--listen", address, "--data-dir", str(tmp_path / "b")],
            capture_output=True, text=True, timeout=10,
        )
        assert second.returncode == 1 and second.stdout == ""
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=10)
    assert first.returncode == 0

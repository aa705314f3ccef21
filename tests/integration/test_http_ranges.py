"""The loader benchmark's and the demo's peer reader (bench/baselines/httpranges.py)
against a real nginx on 127.0.0.1: ranges with pread's rules at the end of a file, the
OSError family for missing files and bad calls, a copy across fork and pickle, the
record datasets running on it unchanged; and, against a stdlib server that drops every
keep-alive connection after one answer, the reconnect."""

from __future__ import annotations

import errno
import http.server
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emberfs.bench.baselines.httpranges import HttpRangeReader
from emberfs.bench.baselines.nginx import NginxServer, install_nginx
from emberfs.client.data import LocalFiles, encode_shard
from emberfs.client.datasets import IterableRecordDataset, RecordDataset

PAYLOAD = os.urandom(100_000)
SAMPLES = [bytes([i]) * (50 + 37 * i) for i in range(60)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("http-root")
    (root / "blob.bin").write_bytes(PAYLOAD)
    (root / "d").mkdir()
    for k in range(3):
        (root / "d" / f"shard-{k}.rec").write_bytes(encode_shard(SAMPLES[k * 20:(k + 1) * 20]))
    why = install_nginx(lambda text: None)  # when missing and this may run apt-get, as the bench does
    server = NginxServer(tmp_path_factory.mktemp("nginx"), root)
    why = why or server.unavailable()
    if why:
        pytest.skip(why)
    why = server.start()
    assert not why, why
    try:
        yield server.url, root
    finally:
        server.stop()


@pytest.mark.parametrize(("offset", "length", "expected"), [
    (0, 10, PAYLOAD[:10]),
    (5000, 4096, PAYLOAD[5000:9096]),
    (99_990, 100, PAYLOAD[99_990:]),  # short at the end of the file
    (100_000, 10, b""),  # at the end: empty (HTTP 416)
    (200_000, 10, b""),  # past it
    (10, 0, b""),
])
def test_read_range_follows_pread(served: tuple[str, Path], offset: int, length: int, expected: bytes) -> None:
    assert HttpRangeReader(served[0]).read_range("/blob.bin", offset, length) == expected


def test_whole_files_ranges_and_errors(served: tuple[str, Path]) -> None:
    reader = HttpRangeReader(served[0])
    assert reader.read_file("/blob.bin") == PAYLOAD
    assert reader.read_ranges([("/blob.bin", 1, 2), ("/d/shard-0.rec", 0, 8), ("/blob.bin", 99_999, 5)]) == [
        PAYLOAD[1:3], b"EMBERREC", PAYLOAD[-1:]]
    with reader.open("/blob.bin") as f:
        assert f.read(4) == PAYLOAD[:4]
    with pytest.raises(FileNotFoundError) as missing:
        reader.read_range("/no/such.rec", 0, 10)
    assert missing.value.filename == "/no/such.rec"
    with pytest.raises(OSError) as negative:
        reader.read_range("/blob.bin", -1, 10)
    assert negative.value.errno == errno.EINVAL
    with pytest.raises(OSError) as write:
        reader.open("/blob.bin", "wb")
    assert write.value.errno == errno.EROFS
    reader.close()
    assert reader.read_range("/blob.bin", 0, 3) == PAYLOAD[:3]  # a closed reader opens a new connection


@pytest.mark.parametrize("url", ["https://127.0.0.1/", "127.0.0.1:80", "http:///x"])
def test_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="http://host"):
        HttpRangeReader(url)


def test_copies_across_fork_and_pickle(served: tuple[str, Path]) -> None:
    reader = HttpRangeReader(served[0])
    assert reader.read_range("/blob.bin", 0, 8) == PAYLOAD[:8]  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the right bytes
        ok = reader.read_range("/blob.bin", 777, 100) == PAYLOAD[777:877]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reader.read_range("/blob.bin", 8, 8) == PAYLOAD[8:16]  # the parent's still works
    copy = pickle.loads(pickle.dumps(reader))
    assert copy.read_range("/blob.bin", 50, 5) == PAYLOAD[50:55] and repr(copy) == repr(reader)


def test_record_datasets_run_on_it_unchanged(served: tuple[str, Path]) -> None:
    url, root = served
    names = [f"d/shard-{k}.rec" for k in range(3)]
    remote = RecordDataset(HttpRangeReader(url), [f"/{n}" for n in names], cache_bytes=0)
    local = RecordDataset(LocalFiles(), [str(root / n) for n in names], cache_bytes=0)
    picks = [59, 0, 33, 20, 19, 7]
    assert remote.__getitems__(picks) == local.__getitems__(picks) == [SAMPLES[i] for i in picks]
    shuffled = list(IterableRecordDataset(HttpRangeReader(url), [f"/{n}" for n in names], shuffle=True, seed=1))
    assert sorted(shuffled) == sorted(SAMPLES) and shuffled != SAMPLES


class _OneAnswerPerConnection(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 without `Connection: close`, yet closing after each answer: what a client
    meets when a server's keep-alive timeout ends between two of its requests."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        start, end = (int(x) for x in self.headers["Range"].removeprefix("bytes=").split("-"))
        body = PAYLOAD[start:end + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_reconnects_when_the_server_closed_the_connection() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneAnswerPerConnection)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        reader = HttpRangeReader(f"http://127.0.0.1:{server.server_address[1]}")
        got = [reader.read_range("/blob.bin", offset, 100) for offset in (0, 100, 5000)]
        assert got == [PAYLOAD[0:100], PAYLOAD[100:200], PAYLOAD[5000:5100]]
        assert _OneAnswerPerConnection.connections == 3  # each read after the first reconnected
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""`emberfs.client.fsspec` beyond fsspec's own suites (test_fsspec_abstract.py).

URL and range rules (pure, no cluster); then on a real `cluster3` (64 KiB chunks):
registration through the `fsspec.specs` entry point, ranged reads byte-exact across
chunk boundaries (`cat_file`, `open()`), `cat_ranges` as one `read_ranges` batch,
the OSError family, pickling, spawn and fork, the async face, and pandas.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import multiprocessing
import operator
import os
import pickle
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

fsspec = pytest.importorskip("fsspec")

from emberfs.client import Client  # noqa: E402
from emberfs.client._fsspec_paths import TO_EOF, direct_range, resolve_range, split_url  # noqa: E402
from emberfs.client.fsspec import EmberFileSystem  # noqa: E402

pytestmark = pytest.mark.timeout(90)

CHUNK = 64 * 1024  # cluster3's chunk size


# -- pure rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address", "path"),
    [
        ("emberfs://127.0.0.1:9000/data/a.csv", "127.0.0.1:9000", "/data/a.csv"),
        ("emberfs://meta:7000", "meta:7000", "/"),
        ("emberfs://meta:7000/", "meta:7000", "/"),
        ("emberfs:///data/x/", None, "/data/x"),
        ("/data//x/", None, "/data//x"),
        ("data/x", None, "/data/x"),
        ("", None, "/"),
        (Path("/p/q"), None, "/p/q"),
    ],
)
def test_split_url(url: Any, address: str | None, path: str) -> None:
    assert split_url(url) == (address, path)
    assert EmberFileSystem._strip_protocol(url) == path


def test_kwargs_from_urls() -> None:
    get = EmberFileSystem._get_kwargs_from_urls
    assert get("emberfs://10.0.0.5:9000/a") == {"host": "10.0.0.5", "port": 9000}
    assert get("emberfs://[::1]:9000/a") == {"host": "::1", "port": 9000}
    assert get("emberfs:///a") == {}
    assert get("/a") == {}
    with pytest.raises(ValueError, match="HOST:PORT"):
        get("emberfs://meta/a")


def test_address_options(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = {"skip_instance_cache": True}
    assert EmberFileSystem("h", 1, **opts).address == "h:1"
    assert EmberFileSystem("::1", 5, **opts).address == "[::1]:5"
    assert EmberFileSystem(address="m:2", **opts).address == "m:2"
    monkeypatch.setenv("EMBERFS_META", "env:3")
    assert EmberFileSystem(**opts).address == "env:3"
    with pytest.raises(ValueError, match="two metaserver addresses"):
        EmberFileSystem("h", 1, address="m:2", **opts)
    fs = EmberFileSystem("h", 1, **opts)
    assert fs.unstrip_protocol("/a/b") == "emberfs://h:1/a/b"
    assert fs.unstrip_protocol("emberfs://h:1/a") == "emberfs://h:1/a"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, (0, 100)),
        (10, None, (10, 90)),
        (None, 10, (0, 10)),
        (10, 20, (10, 10)),
        (-10, None, (90, 10)),
        (-200, None, (0, 100)),
        (None, -10, (0, 90)),
        (-30, -10, (70, 20)),
        (50, 40, (50, 0)),
        (150, 200, (100, 0)),
        (90, 500, (90, 10)),
    ],
)
def test_resolve_range(start: int | None, end: int | None, expected: tuple[int, int]) -> None:
    assert resolve_range(start, end, 100) == expected


def test_direct_range_needs_no_size_unless_a_bound_is_negative() -> None:
    assert direct_range(None, None) == (0, TO_EOF)
    assert direct_range(5, None) == (5, TO_EOF)
    assert direct_range(5, 9) == (5, 4)
    assert direct_range(9, 5) == (9, 0)
    assert direct_range(-1, None) is None and direct_range(0, -1) is None


# -- on a cluster ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def address(cluster3: Any) -> str:
    return str(cluster3.meta_address)


@pytest.fixture(scope="module")
def efs(address: str) -> EmberFileSystem:
    return EmberFileSystem(address=address, skip_instance_cache=True)


@pytest.fixture
def base(efs: EmberFileSystem) -> Iterator[str]:
    path = f"/fsspec-{uuid.uuid4().hex[:12]}"
    efs.mkdir(path)
    yield path
    efs.rm(path, recursive=True)


def _payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def test_entry_point_registration(address: str, base: str) -> None:
    assert fsspec.get_filesystem_class("emberfs") is EmberFileSystem
    host, port = address.rsplit(":", 1)
    fs = fsspec.filesystem("emberfs", host=host, port=int(port))
    assert isinstance(fs, EmberFileSystem) and fs.address == address
    url = f"emberfs://{address}{base}/via-open.bin"
    with fsspec.open(url, "wb") as f:
        f.write(b"hello, ember")
    with fsspec.open(url, "rb") as f:
        assert f.read() == b"hello, ember"
    with fsspec.open(url, "rt", encoding="utf-8") as f:
        assert f.read() == "hello, ember"
    fs2, path = fsspec.core.url_to_fs(url)
    assert isinstance(fs2, EmberFileSystem) and fs2.address == address and path == f"{base}/via-open.bin"
    assert fs2.info(url)["size"] == 12
    # Instances are cached per address and options, as fsspec does.
    assert fsspec.filesystem("emberfs", host=host, port=int(port)) is fs


def test_cat_file_ranges_across_chunks(efs: EmberFileSystem, base: str) -> None:
    size = 3 * CHUNK + CHUNK // 2
    data = _payload(size)
    path = f"{base}/big.bin"
    efs.pipe_file(path, data)
    assert efs.info(path)["size"] == size
    assert efs.cat_file(path) == data
    cases = [
        (0, 1), (CHUNK - 1, CHUNK + 1), (CHUNK - 5, 2 * CHUNK + 5), (1, size - 1),
        (2 * CHUNK, 3 * CHUNK), (size - 3, size), (size - 3, size + 100), (size, size + 5),
        (size + 10, size + 20), (10, 5), (-CHUNK - 7, None), (None, -CHUNK - 3),
        (-3 * CHUNK, -CHUNK + 1), (-10 * size, 5), (None, None), (CHUNK, None),
    ]  # fmt: skip
    for start, end in cases:
        assert efs.cat_file(path, start=start, end=end) == data[start:end], (start, end)
    assert efs.read_block(path, CHUNK - 10, 20) == data[CHUNK - 10 : CHUNK + 10]
    assert efs.head(path, 100) == data[:100] and efs.tail(path, 100) == data[-100:]


@pytest.mark.parametrize("block_size", [1000, CHUNK, 5 * 2**20])
def test_open_ranged_reads(efs: EmberFileSystem, base: str, block_size: int) -> None:
    size = 4 * CHUNK + 123
    data = _payload(size, seed=block_size)
    path = f"{base}/r.bin"
    efs.pipe_file(path, data)
    rng = random.Random(1)
    with efs.open(path, "rb", block_size=block_size) as f:
        assert f.size == size and f.seekable()
        for _ in range(40):
            offset = rng.randrange(size + 10)
            length = rng.randrange(3 * CHUNK)
            f.seek(offset)
            assert f.read(length) == data[offset : offset + length]
        f.seek(-CHUNK - 1, io.SEEK_END)
        assert f.read() == data[-CHUNK - 1 :]
        f.seek(0)
        assert f.read() == data
    with efs.open(path, "rb", cache_type="none") as f:
        f.seek(CHUNK - 2)
        assert f.read(4) == data[CHUNK - 2 : CHUNK + 2]


def test_open_write_modes(efs: EmberFileSystem, base: str) -> None:
    path = f"{base}/deep/er/w.bin"  # parents are made (auto_mkdir)
    data = _payload(2 * CHUNK + 77)
    with efs.open(path, "wb", block_size=CHUNK // 3) as f:
        for i in range(0, len(data), 5000):
            f.write(data[i : i + 5000])
    assert efs.cat_file(path) == data
    with efs.open(path, "ab") as f:
        assert f.tell() == len(data)
        f.write(b"tail")
    assert efs.cat_file(path) == data + b"tail"
    with pytest.raises(FileExistsError):
        efs.open(path, "xb")
    with efs.open(path, "wb") as f:
        f.write(b"short")
    assert efs.cat_file(path) == b"short"
    # A transaction writes beside the target and renames over it on commit.
    with efs.transaction:
        with efs.open(path, "wb") as f:
            f.write(b"committed")
        assert efs.cat_file(path) == b"short"
    assert efs.cat_file(path) == b"committed"
    assert efs.ls(f"{base}/deep/er", detail=False) == [path]


def test_cat_ranges_one_batch(efs: EmberFileSystem, base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _payload(3 * CHUNK + 5, seed=1), _payload(CHUNK + 9, seed=2)
    efs.pipe({f"{base}/a": a, f"{base}/b": b})
    calls: list[int] = []
    original = Client.read_ranges

    async def counted(self: Client, ranges: Any) -> list[bytes]:
        calls.append(len(ranges))
        return await original(self, ranges)

    monkeypatch.setattr(Client, "read_ranges", counted)
    paths = [f"{base}/a", f"{base}/b", f"{base}/a", f"{base}/a", f"{base}/b", f"{base}/a", f"{base}/a"]
    starts = [0, CHUNK - 3, CHUNK - 1, 2 * CHUNK + 100, -5, 5, len(a) + 3]
    ends = [10, CHUNK + 3, 2 * CHUNK + 1, None, None, 4, len(a) + 9]
    blobs = [a if p.endswith("/a") else b for p in paths]
    out = efs.cat_ranges(paths, starts, ends)
    assert out == [blob[s:e] for blob, s, e in zip(blobs, starts, ends, strict=True)]
    assert calls == [len(paths)]
    assert efs.cat_ranges([f"emberfs://{efs.address}{base}/b"] * 2, 0, 4) == [b[:4]] * 2
    # One missing file costs only its own ranges, or raises with on_error="raise".
    out = efs.cat_ranges([f"{base}/a", f"{base}/missing"], [0, 0], [3, 3])
    assert out[0] == a[:3] and isinstance(out[1], FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        efs.cat_ranges([f"{base}/a", f"{base}/missing"], [0, 0], [3, 3], on_error="raise")
    with pytest.raises(ValueError):
        efs.cat_ranges([f"{base}/a"], [0, 1], [3, 4])


def test_namespace_operations(efs: EmberFileSystem, base: str, tmp_path: Path) -> None:
    efs.pipe({f"{base}/d/x": b"x", f"{base}/d/sub/y": b"yy"})
    efs.mkdir(f"{base}/d/empty")
    listing = {i["name"]: i for i in efs.ls(f"{base}/d")}
    assert sorted(listing) == [f"{base}/d/empty", f"{base}/d/sub", f"{base}/d/x"]
    assert listing[f"{base}/d/x"]["type"] == "file" and listing[f"{base}/d/x"]["size"] == 1
    assert listing[f"{base}/d/sub"]["type"] == "directory"
    assert efs.ls(f"{base}/d/x", detail=False) == [f"{base}/d/x"]
    assert base in efs.ls("/", detail=False) and efs.info("/")["type"] == "directory"
    assert efs.find(f"{base}/d") == [f"{base}/d/sub/y", f"{base}/d/x"]
    assert efs.du(f"{base}/d") == 3
    assert efs.isdir(f"{base}/d/empty") and efs.isfile(f"{base}/d/x") and not efs.exists(f"{base}/d/x/no")
    assert efs.modified(f"{base}/d/x").tzinfo is not None
    efs.touch(f"{base}/d/t")
    assert efs.cat_file(f"{base}/d/t") == b""
    efs.touch(f"{base}/d/x", truncate=False)
    assert efs.cat_file(f"{base}/d/x") == b"x"
    efs.mv(f"{base}/d/sub", f"{base}/d/empty")  # into an existing directory
    assert efs.cat_file(f"{base}/d/empty/sub/y") == b"yy"
    efs.mv(f"{base}/d/x", f"{base}/d/x2")
    assert not efs.exists(f"{base}/d/x") and efs.cat_file(f"{base}/d/x2") == b"x"
    efs.get(f"{base}/d", str(tmp_path / "out"), recursive=True)
    assert (tmp_path / "out" / "empty" / "sub" / "y").read_bytes() == b"yy"
    (tmp_path / "up.bin").write_bytes(_payload(CHUNK + 1))
    efs.put(str(tmp_path / "up.bin"), f"{base}/up/")
    assert efs.cat_file(f"{base}/up/up.bin") == _payload(CHUNK + 1)
    efs.cp_file(f"{base}/up/up.bin", f"{base}/copy.bin")
    assert efs.cat_file(f"{base}/copy.bin") == _payload(CHUNK + 1)
    efs.rm(f"{base}/d", recursive=True)
    assert not efs.exists(f"{base}/d")


def test_errors_are_the_oserror_family(efs: EmberFileSystem, base: str) -> None:
    efs.pipe_file(f"{base}/f", b"data")
    efs.mkdir(f"{base}/dir")
    efs.pipe_file(f"{base}/dir/inner", b"1")
    with pytest.raises(FileNotFoundError):
        efs.info(f"{base}/missing")
    with pytest.raises(FileNotFoundError):
        efs.cat_file(f"{base}/missing")
    with pytest.raises(FileNotFoundError):
        efs.open(f"{base}/missing", "rb")
    with pytest.raises(FileNotFoundError):
        efs.ls(f"{base}/missing")
    with pytest.raises(IsADirectoryError):
        efs.cat_file(f"{base}/dir")
    with pytest.raises(IsADirectoryError):
        efs.rm(f"{base}/dir")
    with pytest.raises(FileExistsError):
        efs.mkdir(f"{base}/dir")
    with pytest.raises(FileExistsError):
        efs.pipe_file(f"{base}/f", b"x", mode="create")
    with pytest.raises(OSError) as info:
        efs.rmdir(f"{base}/dir")
    assert info.value.errno == 39  # ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        efs.ls(f"{base}/f/x")
    assert efs.cat_file(f"{base}/f") == b"data"


def test_unreachable_metaserver_is_connection_error() -> None:
    fs = EmberFileSystem(address="127.0.0.1:1", timeout=2.0, skip_instance_cache=True)
    with pytest.raises((ConnectionError, TimeoutError)):
        fs.ls("/")


def test_pickle_spawn_and_fork(efs: EmberFileSystem, base: str) -> None:
    path = f"{base}/p.bin"
    data = _payload(2 * CHUNK + 3)
    efs.pipe_file(path, data)
    copy = pickle.loads(pickle.dumps(efs))
    assert isinstance(copy, EmberFileSystem) and copy.address == efs.address
    assert copy.cat_file(path, start=CHUNK - 1, end=CHUNK + 1) == data[CHUNK - 1 : CHUNK + 1]
    with efs.open(path, "rb") as f:
        f.seek(CHUNK)
        g = pickle.loads(pickle.dumps(f))  # reopened at the same position
        assert g.read(5) == data[CHUNK : CHUNK + 5]
    read_it = operator.methodcaller("cat_file", path, start=1, end=CHUNK + 2)
    for method in ("spawn", "fork"):
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(2) as pool:
            got = pool.map_async(read_it, [efs, copy]).get(timeout=60)
        assert got == [data[1 : CHUNK + 2]] * 2, method
    assert efs.cat_file(path) == data  # the parent's Client was closed for the fork; a new one


def _child_reads(fs: EmberFileSystem, path: str, queue: Any) -> None:
    try:
        queue.put(("ok", fs.cat_file(path)))
    except BaseException as exc:  # reported to the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_with_a_file_open_for_writing_refuses_in_the_child(efs: EmberFileSystem, base: str) -> None:
    path = f"{base}/w.bin"
    efs.pipe_file(path, b"before")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with efs.open(f"{base}/open.bin", "wb") as f:
        f.write(b"x")
        child = ctx.Process(target=_child_reads, args=(efs, path, queue))
        child.start()
        kind, detail = queue.get(timeout=30)
        child.join(30)
    assert kind == "error" and "RuntimeError" in detail and "open for writing" in detail
    # After the file is closed the next fork goes ahead, and so does the child.
    child = ctx.Process(target=_child_reads, args=(efs, path, queue))
    child.start()
    assert queue.get(timeout=30) == ("ok", b"before")
    child.join(30)
    assert efs.cat_file(f"{base}/open.bin") == b"x"


def test_async_face(address: str, base: str) -> None:
    async def main() -> None:
        fs = EmberFileSystem(address=address, asynchronous=True, skip_instance_cache=True)
        data = _payload(CHUNK + 50, seed=3)
        await fs._pipe_file(f"{base}/async.bin", data)
        assert await fs._cat_file(f"{base}/async.bin", start=CHUNK - 1, end=CHUNK + 1) == data[CHUNK - 1 : CHUNK + 1]
        f = await fs.open_async(f"{base}/async.bin", "rb")
        f.seek(CHUNK)  # fsspec's async file seeks without I/O
        assert await f.read(10) == data[CHUNK : CHUNK + 10]
        await f.close()
        async with await fs.open_async(f"{base}/async2.bin", "xb") as w:
            await w.write(b"streamed")
        assert await fs._cat_file(f"{base}/async2.bin") == b"streamed"
        assert sorted(await fs._ls(base, detail=False)) == [f"{base}/async.bin", f"{base}/async2.bin"]
        await fs.aclose()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_pandas_reads_and_writes_emberfs_urls(address: str, base: str) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"sample": range(20000), "label": [f"class-{i % 7}" for i in range(20000)]})
    url = f"emberfs://{address}{base}/table.csv"
    frame.to_csv(url, index=False)
    assert fsspec.filesystem("emberfs", address=address).size(f"{base}/table.csv") > 2 * CHUNK
    back = pd.read_csv(url)
    pd.testing.assert_frame_equal(back, frame)
    if importlib.util.find_spec("pyarrow") is not None:
        parquet = f"emberfs://{address}{base}/table.parquet"
        frame.to_parquet(parquet)
        pd.testing.assert_frame_equal(pd.read_parquet(parquet), frame)

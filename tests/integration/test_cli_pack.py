"""`emberfs pack` and `emberfs shards` against a real 3-node cluster (64 KiB chunks, so
every shard spans several chunks): a folder of image-like files and a JSON-lines file
packed by the CLI in a subprocess, then read back through `read_manifest` and
`RecordReader` on a SyncClient, sample for sample and key for key."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from emberfs.client import SyncClient
from emberfs.client.data import RecordReader
from emberfs.client.shards import read_keys, read_manifest, verify_manifest

pytestmark = pytest.mark.timeout(180)

CLI_TIMEOUT_S = 90


def emberfs(meta: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emberfs.client.cli", "--meta", meta, *args],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """60 image-like files of 0.1-40 KiB in three folders (random bytes: nothing
    compresses or repeats), a 100-line JSON-lines file, and a README the patterns skip."""
    rng = random.Random(17)
    root = tmp_path / "src"
    for k in range(60):
        path = root / f"class-{k % 3}" / f"img-{k:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(100, 40 << 10)))
    lines = [f'{{"id": {i}, "caption": "{"x" * rng.randint(0, 300)}"}}' for i in range(100)]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    (root / "README").write_text("not a sample\n")
    return root


def test_pack_images_and_json_lines_then_read_them_back(cluster3: Any, src: Path) -> None:
    meta = cluster3.meta_address
    dest = f"/datasets-{uuid.uuid4().hex[:8]}"

    images = emberfs(meta, "pack", str(src), f"{dest}/images", "--pattern", "*.jpg", "--max-bytes", "256K")
    assert images.returncode == 0 and images.stderr == "", images
    assert images.stdout.splitlines()[-1] == f"manifest: {dest}/images/manifest.json"
    rows = emberfs(meta, "pack", str(src), f"{dest}/rows", "--jsonl", "--max-count", "30")
    assert rows.returncode == 0 and rows.stderr == "", rows

    expected = sorted((p.relative_to(src).as_posix(), p.read_bytes()) for p in src.rglob("*.jpg"))
    lines = (src / "captions.jsonl").read_bytes().splitlines()
    with SyncClient(meta) as fs:
        m = read_manifest(fs, f"{dest}/images")  # sizes checked against one listing
        assert m.total_samples == 60 and len(m.paths) > 1
        assert all(size <= 256 << 10 for size in m.sizes)
        samples = [s for path in m.paths for s in RecordReader(fs, path)]
        assert samples == [data for _, data in expected]
        keys = [k for i in range(len(m.paths)) for k in read_keys(fs, m, i)]
        assert keys == [name for name, _ in expected]
        assert verify_manifest(fs, f"{dest}/images/manifest.json") == m  # every whole-file CRC as written

        r = read_manifest(fs, f"{dest}/rows")
        assert r.counts == [30, 30, 30, 10]
        assert [s for path in r.paths for s in RecordReader(fs, path)] == lines
        assert read_keys(fs, r, 3)[-1] == "captions.jsonl:100"

        again = emberfs(meta, "pack", str(src), f"{dest}/images")
        assert again.returncode == 1 and "a dataset is already there" in again.stderr
        assert read_manifest(fs, f"{dest}/images") == m

    verified = emberfs(meta, "shards", "verify", f"{dest}/images")
    assert verified.returncode == 0 and verified.stdout.startswith(f"ok: {len(m.paths)} shards, 60 samples"), verified
    info = emberfs(meta, "shards", "info", f"{dest}/rows")
    assert info.returncode == 0 and "4 shards, 100 samples" in info.stdout and "shard-00003.rec" in info.stdout


def test_an_interrupted_pack_leaves_no_manifest_on_the_cluster(cluster3: Any, src: Path) -> None:
    meta = cluster3.meta_address
    dest = f"/datasets-{uuid.uuid4().hex[:8]}/rows"
    (src / "z-broken.jsonl").write_text('{"ok": true}\n{"cut": \n')  # after captions.jsonl's 100 lines
    result = emberfs(meta, "pack", str(src), dest, "--jsonl", "--max-count", "7")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"emberfs: pack: {dest}: left without a manifest (incomplete)"
    with SyncClient(meta) as fs:
        names = fs.listdir(dest)
        # 101 samples: 14 finished shards of 7, and the 15th unfinished
        assert "manifest.json" not in names and len([n for n in names if n.endswith(".rec")]) == 15
        assert not [n for n in names if n.startswith(".")]  # no temporary manifest either
        with pytest.raises(OSError, match="no manifest"):
            read_manifest(fs, dest)

"""The quick-start demo: a real metaserver process and the `emberfs` CLI against it.

Every step is a real command a user could type; each is echoed before it runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

READY_PREFIX = "emberfs-meta listening on "


def start_metaserver(data_dir: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emberfs.metaserver", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(READY_PREFIX):
        proc.kill()
        raise SystemExit(f"metaserver did not start (said {line!r})")
    return proc, line[len(READY_PREFIX):].strip()


def run(address: str, *args: str, expect_fail: bool = False) -> None:
    print(f"\n$ emberfs {' '.join(args)}", flush=True)
    env = dict(os.environ, EMBERFS_META=address)
    rc = subprocess.run([sys.executable, "-m", "emberfs.client.cli", *args], env=env).returncode
    if (rc != 0) != expect_fail:
        raise SystemExit(f"step failed: emberfs {' '.join(args)} (exit {rc})")


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="emberfs-demo-")
    proc, address = start_metaserver(data_dir)
    print(f"metaserver on {address}, namespace in {data_dir}")
    try:
        run(address, "mkdir", "-p", "/datasets/imagenet/train", "/datasets/imagenet/val")
        run(address, "touch", "/datasets/imagenet/train/shard-000.rec", "/datasets/imagenet/train/shard-001.rec")
        run(address, "ln", "-s", "/datasets/imagenet/train", "/train")
        run(address, "mv", "/datasets/imagenet/val", "/datasets/imagenet/validation")
        run(address, "chmod", "750", "/datasets/imagenet/validation")
        run(address, "ls", "-l", "-R", "/")
        run(address, "stat", "/train")
        run(address, "rmdir", "/datasets", expect_fail=True)
        run(address, "rm", "-r", "/datasets/imagenet/validation")
        run(address, "statfs")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"\nmetaserver stopped (exit {rc})")


if __name__ == "__main__":
    main()

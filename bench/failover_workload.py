"""The failover benchmark's and the fault suite's workload (bench/failover.py and
tests/faults/conftest.py use it): continuous writes (new files, in-place overwrites,
whole replacements) and byte-verified reads through the real async Client on a
background thread. A write's bytes enter the expected contents only once the Client
acknowledged it; a failed write makes its file uncertain (dropped from the checks,
never written again) and is counted.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emberfs.client import Client, RetryPolicy, SyncClient

__all__ = ["CHUNK", "Workload", "WorkloadReport", "difference", "st_chunk"]

CHUNK = 64 * 1024  # the fault suite's chunk size (the smallest the metaserver takes)
HISTORY = 4  # earlier acknowledged contents kept per file, to explain a wrong read


@dataclass
class WorkloadReport:
    acknowledged: int
    failed_writes: int
    write_failures: list[str]  # the first few
    reads_verified: int
    failed_reads: int
    bad_reads: list[str]  # a read that returned other bytes than the acknowledged ones
    longest_stall_s: float  # longest stretch with no acknowledged write
    longest_write_s: float  # the slowest single acknowledged write
    files: dict[str, bytes]  # every file whose writes were all acknowledged: its bytes
    history: dict[str, list[bytes]]  # each file's earlier acknowledged contents, newest last
    uncertain: set[str]  # files a failed write may have half-changed
    longest_read_stall_s: float = 0.0  # longest stretch with no read that returned

    def summary(self) -> str:
        return (
            f"{self.acknowledged} writes acknowledged, {self.failed_writes} failed, "
            f"{self.reads_verified} reads verified ({len(self.bad_reads)} wrong, {self.failed_reads} failed), "
            f"longest stall {self.longest_stall_s:.2f} s (reads {self.longest_read_stall_s:.2f} s), "
            f"slowest write {self.longest_write_s:.2f} s, {len(self.files)} files"
        )


class Workload:
    """Continuous writes and byte-verified reads on `meta` until `stop()`.

    Each writer owns its files (`<prefix>/w<i>-<n>`), so no two writes race on one
    file and the expected bytes of a file are exactly its last acknowledged write's.
    A reader compares a read only if no write to that file began or ended during it.
    All state is touched on the workload's own event loop; the main thread reads the
    counters (ints, safe under the GIL) and gets a consistent report from `stop()`.
    """

    def __init__(
        self,
        meta: str,
        *,
        prefix: str = "/workload",
        writers: int = 2,
        readers: int = 1,
        chunk_size: int = CHUNK,
        files_per_writer: int = 24,
        pause_s: float = 0.01,
        client_timeout_s: float = 30.0,
        seed: int = 5,
    ) -> None:
        self.meta, self.prefix = meta, prefix
        self.writers, self.readers = writers, readers
        self.chunk_size, self.files_per_writer = chunk_size, files_per_writer
        self.pause_s, self.client_timeout_s = pause_s, client_timeout_s
        self._random = random.Random(seed)
        self.acknowledged = 0
        self.failed_writes = 0
        self.reads_verified = 0
        self.failed_reads = 0
        self._failures: list[str] = []
        self._bad_reads: list[str] = []
        self._files: dict[str, bytes] = {}
        self._versions: dict[str, int] = {}
        self._history: dict[str, list[bytes]] = {}
        self._busy: set[str] = set()
        self._uncertain: set[str] = set()
        self._ack_times: list[float] = []
        self._read_times: list[float] = []  # when each read returned bytes (judged or not)
        self._longest_write = 0.0
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-workload", daemon=True)

    # -- control (main thread) --------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Workload:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the workload did not start within {timeout:g} s")
        if self._error is not None:
            raise RuntimeError("the workload failed to start") from self._error
        return self

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def wait_acks(self, more: int, timeout: float = 30.0) -> None:
        """Block until `more` further writes are acknowledged (AssertionError after timeout)."""
        target = self.acknowledged + more
        deadline = time.monotonic() + timeout
        while self.acknowledged < target:
            if self._error is not None:
                raise RuntimeError("the workload crashed") from self._error
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"only {self.acknowledged - target + more} of {more} more writes acknowledged in {timeout:g} s "
                    f"({self.failed_writes} failed; first failures: {self._failures[:3]})"
                )
            time.sleep(0.02)

    def longest_stall(self, since: float | None = None, until: float | None = None) -> float:
        """The longest time with no acknowledged write between `since` and `until`
        (time.monotonic() values; default: the whole run up to now)."""
        return self._longest_gap(self._ack_times, since, until)

    def longest_read_stall(self, since: float | None = None, until: float | None = None) -> float:
        """The longest time no read returned bytes between `since` and `until` (as longest_stall)."""
        return self._longest_gap(self._read_times, since, until)

    def _longest_gap(self, moments: list[float], since: float | None, until: float | None) -> float:
        start = self._started_at if since is None else since
        end = time.monotonic() if until is None else until
        times = [t for t in list(moments) if start <= t <= end]
        edges = [start, *times, end]
        return max(b - a for a, b in itertools.pairwise(edges))

    def stop(self, timeout: float = 60.0) -> WorkloadReport:
        """Let the writes in flight finish, stop, and report."""
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the workload did not stop within {timeout:g} s (a write hangs?)")
        if self._error is not None:
            raise RuntimeError("the workload crashed") from self._error
        return WorkloadReport(
            acknowledged=self.acknowledged,
            failed_writes=self.failed_writes,
            write_failures=self._failures[:5],
            reads_verified=self.reads_verified,
            failed_reads=self.failed_reads,
            bad_reads=self._bad_reads[:5],
            longest_stall_s=self.longest_stall(until=self._ack_times[-1] if self._ack_times else None),
            longest_write_s=self._longest_write,
            files=dict(self._files),
            history={path: list(old) for path, old in self._history.items()},
            uncertain=set(self._uncertain),
            longest_read_stall_s=self.longest_read_stall(until=self._read_times[-1] if self._read_times else None),
        )

    # -- the loop (workload thread) ---------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the main thread by start/wait/stop
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        # Many attempts, short backoff: the metaserver's restart must not fail a write
        # whose only problem is a second of silence (chunk I/O retries to the deadline).
        retry = RetryPolicy(max_attempts=60, max_delay=0.5, attempt_timeout=5.0)
        async with Client(self.meta, uid=0, gid=0, groups=[], timeout=self.client_timeout_s, retry=retry) as fs:
            await fs.makedirs(self.prefix, exist_ok=True)
            self._started_at = time.monotonic()
            self._ready.set()
            tasks = [asyncio.create_task(self._writer(fs, i)) for i in range(self.writers)]
            tasks += [asyncio.create_task(self._reader(fs)) for _ in range(self.readers)]
            await asyncio.gather(*tasks)

    async def _writer(self, fs: Client, writer: int) -> None:
        rand = random.Random(self._random.random())
        own: list[str] = []
        made = 0
        while not self._stopping.is_set():
            if len(own) < 3 or (len(own) < self.files_per_writer and rand.random() < 0.4):
                path = f"{self.prefix}/w{writer}-{made}"
                made += 1
                await self._write(fs, path, own, lambda old: self._payload(rand), whole=True)
            elif rand.random() < 0.6:
                path = rand.choice(own)
                await self._write(fs, path, own, lambda old: self._overwrite(rand, old), whole=False)
            else:
                await self._write(fs, rand.choice(own), own, lambda old: self._payload(rand), whole=True)
            await asyncio.sleep(self.pause_s)

    def _payload(self, rand: random.Random) -> tuple[int, bytes]:
        size = rand.choice([1, 100, self.chunk_size - 1, self.chunk_size, self.chunk_size + 7]) + rand.randrange(
            2 * self.chunk_size
        )
        return 0, rand.randbytes(size)

    def _overwrite(self, rand: random.Random, old: bytes) -> tuple[int, bytes]:
        offset = rand.randrange(len(old) + 1)
        return offset, rand.randbytes(rand.randrange(1, self.chunk_size + 100))

    async def _write(
        self, fs: Client, path: str, own: list[str], make: Callable[[bytes], tuple[int, bytes]], *, whole: bool
    ) -> None:
        old = self._files.get(path, b"")
        offset, piece = make(old)
        expected = piece if whole else old[:offset] + piece + old[offset + len(piece) :]
        self._busy.add(path)
        began = time.monotonic()
        try:
            if whole:
                await fs.write_file(path, piece)
            else:
                async with fs.open(path, "r+b") as f:
                    await f.seek(offset)
                    await f.write(piece)
        except Exception as exc:  # noqa: BLE001 - every failure is data for the report
            self.failed_writes += 1
            if len(self._failures) < 20:
                self._failures.append(f"{path} at {time.monotonic() - self._started_at:.2f} s: {exc!r}")
            self._files.pop(path, None)
            self._uncertain.add(path)
            if path in own:
                own.remove(path)
        else:
            done = time.monotonic()
            self.acknowledged += 1
            self._ack_times.append(done)
            self._longest_write = max(self._longest_write, done - began)
            if path in self._files:
                self._history.setdefault(path, []).append(self._files[path])
                del self._history[path][:-HISTORY]
            self._files[path] = expected
            self._versions[path] = self._versions.get(path, 0) + 1
            if path not in own:
                own.append(path)
        finally:
            self._busy.discard(path)

    async def _reader(self, fs: Client) -> None:
        rand = random.Random(self._random.random())
        while not self._stopping.is_set():
            quiet = [p for p in self._files if p not in self._busy]
            if not quiet:
                await asyncio.sleep(0.05)
                continue
            path = rand.choice(quiet)
            version = self._versions.get(path)
            try:
                data = await fs.read_file(path)
            except Exception as exc:  # noqa: BLE001
                if path not in self._busy and self._versions.get(path) == version:
                    self.failed_reads += 1
                    if len(self._bad_reads) < 20 and not isinstance(exc, (OSError, TimeoutError)):
                        self._bad_reads.append(f"{path}: read raised {exc!r}")
                continue
            self._read_times.append(time.monotonic())
            if path in self._busy or self._versions.get(path) != version or path not in self._files:
                continue  # a write began or ended meanwhile: either content is right
            expected = self._files[path]
            if data == expected:
                self.reads_verified += 1
            else:
                at = time.monotonic() - self._started_at
                why = difference(expected, data, self._history.get(path, ()), self.chunk_size)
                self._bad_reads.append(f"{path} at {at:.2f} s (write {version}): {why}")
            await asyncio.sleep(self.pause_s)


def st_chunk(fs: SyncClient, path: str) -> int:
    try:
        return fs.stat(path).chunk_size
    except OSError:
        return CHUNK


def difference(expected: bytes, got: bytes, history: Sequence[bytes] = (), chunk_size: int = CHUNK) -> str:
    """Where `got` departs from `expected`, and what the first wrong chunk holds instead:
    zeros, or an earlier acknowledged content of the file (a replica that missed writes)."""
    if got == expected:
        return "identical"
    # The shorter side ends the scan: past it, the first difference is the length itself.
    first = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
                 min(len(expected), len(got)))
    index = first // chunk_size
    span = slice(index * chunk_size, (index + 1) * chunk_size)
    held = got[span]
    if not held.strip(b"\0"):
        what = "zeros"
    else:
        back = [n for n, old in enumerate(reversed(history), 1) if old[span] == held]
        what = f"the bytes of the write {back[0]} before the last" if back else "bytes of no known write"
    return f"{len(got)} bytes (expected {len(expected)}), first difference at {first} (chunk {index}: {what})"

"""Table tests of the CLI progress bar and the df figures (pure functions), and the
bar's redraw rules under a driven clock."""

from __future__ import annotations

import io

import pytest

from emberfs.client._stat import StatFsResult
from emberfs.client.commands._progress import Progress, format_bytes, format_duration, format_progress
from emberfs.client.commands.df import Usage, format_usage, usage
from emberfs.proto import mgmt_pb2

MiB = 2**20


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (64 * MiB, "64.0 MiB"),
        (5 * 2**30, "5.0 GiB"),
        (3 * 2**50, "3.0 PiB"),
        (2**70, "1048576.0 PiB"),  # no unit past PiB: the number grows
        (12.7, "12 B"),  # rates are floats
    ],
)
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (0.4, "0:00"), (0.6, "0:01"), (59, "0:59"), (61, "1:01"), (3599, "59:59"),
     (3600, "1:00:00"), (90061, "25:01:01"), (-3, "0:00")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "line"),
    [
        # the start: no rate yet, so no ETA
        (0, 100 * MiB, 0.0, "[--------------------]   0%  0 B / 100.0 MiB  0 B/s  ETA -:--"),
        # halfway at 10 MiB/s: 5 s to go
        (50 * MiB, 100 * MiB, 5.0, "[##########----------]  50%  50.0 MiB / 100.0 MiB  10.0 MiB/s  ETA 0:05"),
        # a bar cell fills only when its whole share is done
        (99 * MiB, 100 * MiB, 9.9, "[###################-]  99%  99.0 MiB / 100.0 MiB  10.0 MiB/s  ETA 0:00"),
        # finished: the time it took instead of an ETA
        (100 * MiB, 100 * MiB, 65.0, "[####################] 100%  100.0 MiB / 100.0 MiB  1.5 MiB/s  in 1:05"),
        # nothing to copy (empty files only) is complete at once
        (0, 0, 0.0, "[####################] 100%  0 B / 0 B  0 B/s  in 0:00"),
        # more than announced (a file grew while copied): capped at 100%
        (3 * MiB, 2 * MiB, 1.0, "[####################] 100%  3.0 MiB / 2.0 MiB  3.0 MiB/s  in 0:01"),
        # unknown length (stdin): bytes and rate only
        (3 * MiB, None, 2.0, "3.0 MiB  1.5 MiB/s"),
        (0, None, 0.0, "0 B  0 B/s"),
    ],
)
def test_format_progress(done: int, total: int | None, elapsed: float, line: str) -> None:
    assert format_progress(done, total, elapsed) == line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_waits_for_delay_then_redraws_at_most_every_interval() -> None:
    clock, out = Clock(), io.StringIO()
    bar = Progress(10 * MiB, out, enabled=True, delay=0.5, min_interval=0.1, clock=clock)
    bar.advance(MiB)  # before the delay: quick transfers stay silent
    assert out.getvalue() == ""
    clock.now += 0.5
    bar.advance(MiB)
    assert out.getvalue().count("\r") == 1
    for _ in range(20):  # 20 updates within 0.1 s: no redraw
        clock.now += 0.004
        bar.advance(1)
    assert out.getvalue().count("\r") == 1
    clock.now += 0.03
    bar.advance(1)
    assert out.getvalue().count("\r") == 2
    bar.close()
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\r") == 3
    assert "2.0 MiB / 10.0 MiB" in text.rsplit("\r", 1)[1]


def test_progress_quick_transfer_prints_nothing_and_disabled_only_counts() -> None:
    clock, out = Clock(), io.StringIO()
    bar = Progress(10, out, enabled=True, delay=0.5, clock=clock)
    bar.advance(10)
    bar.close()
    assert out.getvalue() == ""
    off = Progress(10, out, enabled=False, delay=0.0, clock=clock)
    off.advance(7)
    off.close()
    assert (off.done, out.getvalue()) == (7, "")


def test_progress_forced_draws_a_final_line_and_blanks_a_longer_one() -> None:
    clock, out = Clock(), io.StringIO()
    bar = Progress(None, out, enabled=True, delay=0.0, min_interval=0.0, clock=clock)
    clock.now += 9.0
    bar.advance(5 * MiB)
    bar.advance(4 * MiB)  # drawn at once: min_interval 0
    bar.close()
    lines = out.getvalue().split("\r")[1:]
    # a shorter line is padded with blanks over what the longer one left
    assert lines == ["5.0 MiB  568.9 KiB/s", "9.0 MiB  1.0 MiB/s  ", "9.0 MiB  1.0 MiB/s\n"]
    bar.close()  # idempotent
    assert out.getvalue().count("\n") == 1


# -- df ----------------------------------------------------------------------------------------


def _fs(capacity: int = 0, free: int = 0) -> StatFsResult:
    return StatFsResult(inodes=6, files=4, directories=1, symlinks=1, used_bytes=3000,
                        capacity_bytes=capacity, free_bytes=free)


def _routing(chains: list[list[tuple[int, int, int]]]) -> mgmt_pb2.RoutingInfo:
    """chains of (target_id, capacity_bytes, used_bytes)."""
    routing = mgmt_pb2.RoutingInfo()
    for chain_id, targets in enumerate(chains, 1):
        chain = routing.chains.add(chain_id=chain_id)
        for target_id, capacity, used in targets:
            chain.targets.add(target_id=target_id)
            routing.targets.add(target_id=target_id, chain_id=chain_id, capacity_bytes=capacity, used_bytes=used)
    return routing


@pytest.mark.parametrize(
    ("fs", "routing", "capacity", "free", "source"),
    [
        # the metaserver's own figures win
        (_fs(10_000, 7_000), None, 10_000, 7_000, "metaserver"),
        # nothing reported anywhere
        (_fs(), None, 0, 0, "none"),
        (_fs(), _routing([]), 0, 0, "none"),
        (_fs(), _routing([[(101, 0, 0), (201, 0, 0)]]), 0, 0, "none"),
        # one chain: its smallest target holds it, its fullest target has used most
        (_fs(), _routing([[(101, 1000, 100), (201, 800, 300), (301, 900, 200)]]), 800, 500, "targets"),
        # chains add up; a target with no report yet does not shrink its chain
        (_fs(), _routing([[(101, 1000, 100), (201, 0, 0)], [(102, 500, 600)]]), 1500, 900, "targets"),
    ],
)
def test_usage(fs: StatFsResult, routing: mgmt_pb2.RoutingInfo | None, capacity: int, free: int, source: str) -> None:
    u = usage(fs, routing)
    assert (u.capacity_bytes, u.free_bytes, u.capacity_source) == (capacity, free, source)
    assert (u.used_bytes, u.inodes, u.files, u.directories, u.symlinks) == (3000, 6, 4, 1, 1)


def test_format_usage() -> None:
    u = Usage(3 * 2**30, 2**30 + 1, 2 * 2**30, "targets", 6, 4, 1, 1)
    header, row = format_usage("h:1", u, human=False)
    assert header.split() == ["Filesystem", "Size", "Used", "Avail", "Use%", "Inodes", "Files", "Dirs", "Symlinks"]
    assert row.split() == ["h:1", str(3 * 2**30), str(2**30 + 1), str(2 * 2**30), "34%", "6", "4", "1", "1"]
    assert len(header) == len(row)  # columns line up
    _, row = format_usage("h:1", u, human=True)
    assert row.split()[1:5] == ["3.0", "GiB", "1.0", "GiB"]
    _, row = format_usage("h:1", Usage(0, 5, 0, "none", 1, 0, 1, 0), human=True)
    assert row.split()[1:6] == ["-", "5", "B", "-", "-"]

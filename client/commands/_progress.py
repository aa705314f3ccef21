"""A one-line progress bar for long transfers, drawn on stderr, no dependencies.

    [#########-----------]  45%  45.0 MiB / 100.0 MiB  12.3 MiB/s  ETA 0:04

`format_progress` is a pure function of the counts and times (table-tested);
`Progress` owns the drawing: it redraws in place with `\\r` at most every
`min_interval` seconds, waits `delay` seconds before its first line so quick
transfers stay silent, and ends with a final line and a newline on `close()` when
it drew anything. The clock is a parameter so tests can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_bytes", "format_duration", "format_progress"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
BAR_WIDTH = 20


def format_bytes(n: float) -> str:
    """Binary units with one decimal (`0 B`, `1023 B`, `1.5 KiB`, `64.0 MiB`)."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in _UNITS[1:]:
        n /= 1024
        if n < 1024 or unit == _UNITS[-1]:
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """`M:SS` under an hour, `H:MM:SS` from there."""
    s = max(0, int(seconds + 0.5))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_progress(done: int, total: int | None, elapsed: float, *, width: int = BAR_WIDTH) -> str:
    """The progress line for `done` of `total` bytes after `elapsed` seconds.

    total None (a stream of unknown length, such as stdin) shows bytes and rate only.
    The rate is the average since the start; the ETA shows `-:--` until there is a rate,
    and a finished transfer shows the time it took (`in M:SS`) instead.
    """
    rate = done / elapsed if elapsed > 0 else 0.0
    rate_text = f"{format_bytes(rate)}/s"
    if total is None:
        return f"{format_bytes(done)}  {rate_text}"
    fraction = 1.0 if total <= 0 else min(done / total, 1.0)
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    if done >= total:
        tail = f"in {format_duration(elapsed)}"  # finished: the time it took
    elif rate > 0:
        tail = f"ETA {format_duration((total - done) / rate)}"
    else:
        tail = "ETA -:--"
    return f"[{bar}] {int(fraction * 100):>3}%  {format_bytes(done)} / {format_bytes(total)}  {rate_text}  {tail}"


class Progress:
    """Counts bytes and redraws `format_progress` on `stream` (see the module docstring).

    A disabled Progress only counts, so callers never branch on it.
    """

    def __init__(
        self,
        total: int | None,
        stream: TextIO,
        *,
        enabled: bool,
        delay: float = 0.5,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.done = total, 0
        self._stream, self._enabled, self._clock = stream, enabled, clock
        self._delay, self._min_interval = delay, min_interval
        self._start = clock()
        self._last_draw: float | None = None
        self._width = 0  # of the last line drawn, to blank what a shorter one leaves

    def advance(self, n: int) -> None:
        self.done += n
        if not self._enabled:
            return
        now = self._clock()
        if now - self._start < self._delay:
            return
        if self._last_draw is not None and now - self._last_draw < self._min_interval:
            return
        self._draw(now)

    def close(self) -> None:
        """The final line and a newline, if the bar is on and drew (or was due to draw)."""
        if not self._enabled:
            return
        now = self._clock()
        if self._last_draw is None and now - self._start < self._delay:
            return
        self._draw(now)
        self._stream.write("\n")
        self._stream.flush()
        self._enabled = False

    def _draw(self, now: float) -> None:
        line = format_progress(self.done, self.total, now - self._start)
        self._stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self._stream.flush()
        self._width, self._last_draw = len(line), now

"""Which asyncio event loop a process runs: the standard one, or uvloop when asked.

EMBERFS_EVENT_LOOP=uvloop (the `emberfs[fast]` extra installs it) switches servers,
the CLI and the benchmark harness to uvloop; "asyncio" (the default) keeps the
standard loop. Set in the environment, it reaches every process a local cluster
starts. Asking for uvloop without it installed is an error, not a silent fallback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["ENV", "LOOPS", "chosen_loop", "run"]

T = TypeVar("T")
ENV = "EMBERFS_EVENT_LOOP"
LOOPS = ("asyncio", "uvloop")


def chosen_loop() -> str:
    name = os.environ.get(ENV, "").strip().lower() or "asyncio"
    if name not in LOOPS:
        raise ValueError(f"{ENV}={name!r}: choose asyncio or uvloop")
    return name


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the chosen loop."""
    if chosen_loop() == "uvloop":
        try:
            import uvloop
        except ImportError:
            main.close()
            raise RuntimeError(f"{ENV}=uvloop but uvloop is not installed: pip install 'emberfs[fast]'") from None
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)

"""Start EmberFS server processes on this machine, and stop or kill them again.

Shared by the integration-test fixtures, the benchmark and (later) `emberfs
local-cluster`. A server started on port 0 announces readiness with exactly one stdout
line, `<prefix> listening on HOST:PORT`, naming the port it got; everything else it
says goes to stderr, which is appended to a log file so a failed start can show why.

A process is restarted on the address its first start reported, so a client (or a
test) that holds the address finds the server again after a crash.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

__all__ = ["ServerProcess", "ServerStartError", "metaserver_process"]

_MAX_READY_LINE = 4096


class ServerStartError(RuntimeError):
    """A server exited or stayed silent instead of announcing its address."""


class ServerProcess:
    """One server process: `start()`, then `stop()` (SIGTERM) or `kill()` (SIGKILL).

    argv is the command without `--listen`; the listen address is appended.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready_prefix: str,
        log_path: Path,
        listen: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.ready_prefix = ready_prefix
        self.log_path = Path(log_path)
        self.listen = listen
        self.env = env
        self.address: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ServerProcess {self.ready_prefix!r} {self.address or self.listen} {state}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> str:
        """Start the process and wait until it announces its address; return it."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        listen = self.address or self.listen
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C aimed at the parent must not reach the server
            # before the parent has decided how to stop it.
            self._proc = subprocess.Popen(
                [*self.argv, "--listen", listen],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                start_new_session=True,
            )
        try:
            self.address = self._await_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self.address

    def restart(self, timeout: float = 20.0) -> str:
        """Start again on the address of the first start (the process must be down)."""
        return self.start(timeout)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if still alive after `grace` seconds; return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_pipe()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs in the server."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._close_pipe()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _await_ready(self, timeout: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        line = b""
        while b"\n" not in line and len(line) < _MAX_READY_LINE:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._start_error(f"no ready line within {timeout:g} s")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, _MAX_READY_LINE)
            if not chunk:
                proc.wait(5)
                raise self._start_error(f"exited with code {proc.returncode} before it was ready")
            line += chunk
        text = line.split(b"\n", 1)[0].decode(errors="replace").strip()
        if not text.startswith(self.ready_prefix):
            raise self._start_error(f"unexpected first line {text!r}")
        return text[len(self.ready_prefix):].strip()

    def _start_error(self, why: str) -> ServerStartError:
        return ServerStartError(f"{' '.join(self.argv)}: {why}; its log ends:\n{self.log_tail()}")

    def _close_pipe(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()


def metaserver_process(
    data_dir: Path, *, log_path: Path | None = None, listen: str = "127.0.0.1:0", extra_args: Sequence[str] = ()
) -> ServerProcess:
    """A metaserver on data_dir (not yet started); logs go to data_dir/../meta.log by default."""
    data_dir = Path(data_dir)
    return ServerProcess(
        [sys.executable, "-m", "emberfs.metaserver", "--data-dir", str(data_dir), *extra_args],
        ready_prefix="emberfs-meta listening on ",
        log_path=log_path or data_dir.parent / f"{data_dir.name}.meta.log",
        listen=listen,
    )

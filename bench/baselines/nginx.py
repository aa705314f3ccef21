"""The peer: nginx serving files (sendfile) to HTTP Range requests on loopback.

`NginxServer` runs nginx over one directory; `NginxSource` reads the run's file from
it with aiohttp Range GETs (the seq and random read rows), and the data loader's rows
and the demo read record shards from it with `httpranges.HttpRangeReader`.

nginx is the Debian package (`apt-get install -y nginx-light`): when it is missing and
this process may run apt-get (root on Debian), `install_nginx` installs it, showing
apt's progress (`--no-install` skips that). It runs here as a child of this process in
the foreground (`daemon off`) on 127.0.0.1 with a config generated in the run's
directory, and is stopped with the run. aiohttp is the optional extra `emberfs[bench]`.
When either is still missing the source says why in `unavailable`; the harness prints
that in the table and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from emberfs.common.aptinstall import apt_install

from ..measure import PEER, child_pids

__all__ = ["INSTALL_HINT", "NginxServer", "NginxSource", "install_nginx", "nginx_version"]

INSTALL_HINT = "apt-get install -y nginx-light"
_START_TIMEOUT_S = 10.0
_CONFIG = """\
daemon off;
master_process on;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/client_body;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def install_nginx(progress: Any) -> str:
    """Install Debian's nginx-light when nginx is missing; "" on success, else why not."""
    return apt_install("nginx-light", lambda: _nginx_binary() is not None, progress, what="the nginx baseline",
                       hint=INSTALL_HINT)


def nginx_version(binary: str | None = None) -> str | None:
    """`1.22.1`, of `binary` or of the nginx on PATH; None when there is none."""
    binary = binary or _nginx_binary()
    if binary is None:
        return None
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ") or None


class NginxServer:
    """nginx serving one directory on 127.0.0.1: a foreground child of this process,
    with its config, pid and logs in `workdir`, stopped by `stop()`.

    binary: the nginx to run (default: the one on PATH or in /usr/sbin).
    """

    def __init__(self, workdir: Path, root: Path, *, binary: str | None = None) -> None:
        self.workdir, self.root = workdir, root
        self.binary = binary if binary is not None else _nginx_binary()
        self.url = ""  # http://127.0.0.1:PORT once started
        self._proc: subprocess.Popen[bytes] | None = None

    def unavailable(self) -> str:
        """Why this nginx cannot run ("" when it can, as far as can be told before starting)."""
        if self.binary is None:
            return f"nginx not installed ({INSTALL_HINT})"
        if not os.access(self.binary, os.X_OK):
            return f"nginx not found at {self.binary} ({INSTALL_HINT})"
        return ""

    def start(self) -> str:
        """Start it and wait for its port; "" when it serves, else why not (it is then stopped)."""
        why = self.unavailable()
        if why:
            return why
        assert self.binary is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        # As root, nginx would hand its workers to `nobody`, who cannot read a private temp dir.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.workdir / "nginx.conf"
        conf.write_text(_CONFIG.format(dir=self.workdir, user=user, port=port, root=self.root))
        with open(self.workdir / "nginx-stderr.log", "ab") as log:  # nginx holds its own copy
            self._proc = subprocess.Popen(
                [self.binary, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "nginx-error.log")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        if not self._await_port(port):
            why = f"nginx did not start: {self._log_tail()}"
            self.stop()
            return why
        self.url = f"http://127.0.0.1:{port}"
        return ""

    def _await_port(self, port: int) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        text = ""
        for name in ("nginx-stderr.log", "nginx-error.log"):
            with contextlib.suppress(FileNotFoundError):
                text += (self.workdir / name).read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-3:]) or "no log"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown; the workers exit with the master
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def pids(self) -> list[int]:
        """The master and its workers (their CPU is the peer's server CPU)."""
        if self._proc is None:
            return []
        return [self._proc.pid, *child_pids(self._proc.pid)]


class NginxSource:
    """The seq and random read peer: aiohttp Range GETs of the run's file from nginx."""

    system = "nginx + aiohttp"
    role = PEER

    def __init__(self, directory: Path, file: Path, connections: int, *, not_installed: str = "") -> None:
        self.unavailable = ""
        self._server = NginxServer(directory / "nginx", file.parent)
        self._file = file
        self._connections = connections
        self._session: Any = None
        self._url = ""
        self._aiohttp: Any = None
        try:
            import aiohttp
        except ImportError:
            self.unavailable = "aiohttp not installed (pip install 'emberfs[bench]')"
            return
        self._aiohttp = aiohttp
        if self._server.unavailable():
            self.unavailable = not_installed or self._server.unavailable()

    async def start(self) -> None:
        if self.unavailable:
            return
        self.unavailable = await asyncio.to_thread(self._server.start)
        if self.unavailable:
            return
        self._url = f"{self._server.url}/{self._file.name}"
        aiohttp = self._aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, force_close=False),
            auto_decompress=False,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.stop()

    def stop(self) -> None:
        self._server.stop()

    async def read_into(self, offset: int, length: int, view: memoryview | None) -> int:
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        async with self._session.get(self._url, headers=headers) as resp:
            if resp.status != 206:
                raise RuntimeError(f"nginx answered {resp.status} to a range request")
            data = await resp.read()
        if view is not None:
            view[:len(data)] = data
        return len(data)

    async def read_bytes(self, offset: int, length: int) -> bytes:
        buffer = bytearray(length)
        count = await self.read_into(offset, length, memoryview(buffer))
        return bytes(buffer[:count])

    def server_pids(self) -> list[int] | None:
        return self._server.pids()

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
import json
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from emberfs.common.auth import ADMIN_TOKEN_FILE, TOKENS_FILE, USER_TOKEN_FILE, load_tokens_file, write_token_files
from emberfs.common.capkeys import KEYS_FILE, default_keys_path, write_keys_file
from emberfs.common.tls import CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, gen_certs

__all__ = [
    "ADMIN_TOKEN_FILE", "TOKENS_FILE", "USER_TOKEN_FILE", "LocalCluster", "ServerProcess", "ServerStartError",
    "metaserver_process", "storage_process",
]

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
        self._terminated: subprocess.Popen[bytes] | None = None  # the process SIGTERM went to

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ServerProcess {self.ready_prefix!r} {self.address or self.listen} {state}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (negative: killed by that signal)."""
        return self._proc.poll() if self._proc is not None else None

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
            self.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_pipe()
        return proc.returncode

    def terminate(self) -> None:
        """SIGTERM once: a second one during shutdown, after the server has put back
        the default handler, would kill it mid-cleanup (exit -15 instead of 0)."""
        proc = self._proc
        if proc is None or proc.poll() is not None or self._terminated is proc:
            return
        proc.send_signal(signal.SIGTERM)
        self._terminated = proc

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
    data_dir: Path,
    *,
    log_path: Path | None = None,
    listen: str = "127.0.0.1:0",
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """A metaserver on data_dir (not yet started); logs go to data_dir/../meta.log by default.
    env: its whole environment (None: this process's)."""
    data_dir = Path(data_dir)
    return ServerProcess(
        [sys.executable, "-m", "emberfs.metaserver", "--data-dir", str(data_dir), *extra_args],
        ready_prefix="emberfs-meta listening on ",
        log_path=log_path or data_dir.parent / f"{data_dir.name}.meta.log",
        listen=listen,
        env=env,
    )


def storage_process(
    data_dir: Path,
    *,
    meta: str,
    node_id: int,
    targets: int = 1,
    listen: str = "127.0.0.1:0",
    heartbeat_interval: float | None = None,
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """A storage server on data_dir (not yet started); logs go to data_dir/../<name>.storage.log.
    env: its whole environment (None: this process's)."""
    data_dir = Path(data_dir)
    argv = [
        sys.executable, "-m", "emberfs.storage",
        "--meta", meta, "--data-dir", str(data_dir), "--node-id", str(node_id), "--targets", str(targets),
    ]
    if heartbeat_interval is not None:
        argv += ["--heartbeat-interval", str(heartbeat_interval)]
    return ServerProcess(
        [*argv, *extra_args],
        ready_prefix="emberfs-storage listening on ",
        log_path=log_path or data_dir.parent / f"{data_dir.name}.storage.log",
        listen=listen,
        env=env,
    )


def _first_token(tokens_file: Path, role: str) -> str | None:
    """The first token of `role` ("admin" or "server") in a valid tokens file."""
    load_tokens_file(tokens_file)  # TokensFileError on a bad file
    for entry in json.loads(tokens_file.read_text())["tokens"]:
        if entry.get(role) is True:
            return str(entry["token"])
    return None


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    """One metaserver (several on etcd: `metaservers`) and N storage servers as local
    processes, with chains created.

    Layout of data_dir: `meta/` (the metaserver), `node-<i>/` (storage node i, node id
    i), `*.log`, and `cluster.json`, which records the ports chosen at the first start
    so a cluster started again on the same data dir comes back on the same addresses:
    the metaserver's chain table names nodes by the address they registered with.

    `env`: variables set for every server process of the cluster, over this process's
    environment as it is when the cluster is made (e.g. {"EMBERFS_EVENT_LOOP": "uvloop"});
    None: they inherit this process's environment.

    Tokens: `tokens_file` starts every server with that tokens file (common/auth.py);
    `auth=True` without one uses `tokens.json` in data_dir, generated on the first start
    (mode 0600) with an admin, a server and a user token, the user being this process's
    uid/gid, and the admin and user tokens alone in `admin.token` and `user.token`
    (0600) for `emberfs --token-file`; the generated user is never root (this
    process's uid/gid when it is not root, else 1000). The launcher's own Mgmt calls
    use the first admin token of the file. With tokens, every server also gets the
    capability keys: `keys_file`, else `keys.json` beside the tokens file, made when
    missing (common/capkeys.py); `capability_ttl` sets the metaserver's
    --capability-ttl (seconds).

    TLS: `tls=True` starts every server with `tls/server.pem` and `tls/server.key` in
    data_dir (made with common/tls.gen_certs on the first start, kept across restarts)
    and has them verify each other with `tls/ca.pem`; `tls_ca` is that CA's path, for
    clients (Client(tls_ca=cluster.tls_ca)); None without TLS.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        nodes: int = 3,
        replicas: int = 3,
        targets_per_node: int = 1,
        meta_listen: str = "127.0.0.1:0",
        chunk_size: int | None = None,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        env: dict[str, str] | None = None,
        auth: bool = False,
        tokens_file: Path | None = None,
        keys_file: Path | None = None,
        capability_ttl: float | None = None,
        tls: bool = False,
        etcd_endpoints: Sequence[str] = (),
        etcd_prefix: str = "emberfs/",
        etcd_max_txn_ops: int | None = None,
        metaservers: int = 1,
        manager_lease: int | None = None,
    ) -> None:
        if nodes < 1 or replicas < 1 or targets_per_node < 1:
            raise ValueError("nodes, replicas and targets_per_node must be at least 1")
        if metaservers < 1 or (metaservers > 1 and not etcd_endpoints):
            raise ValueError("several metaservers share a namespace only on the etcd engine (etcd_endpoints)")
        if replicas > nodes:
            raise ValueError(f"{replicas} replicas need at least {replicas} nodes, not {nodes}")
        self.data_dir = Path(data_dir)
        self.nodes, self.replicas, self.targets_per_node = nodes, replicas, targets_per_node
        self.heartbeat_interval = heartbeat_interval
        self.env = None if env is None else {**os.environ, **env}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        saved = self._load_saved()
        self.tokens_file: Path | None = Path(tokens_file) if tokens_file is not None else None
        if self.tokens_file is None and auth:
            self.tokens_file = write_token_files(self.data_dir)
        self.admin_token = _first_token(self.tokens_file, "admin") if self.tokens_file is not None else None
        auth_args = ["--tokens-file", str(self.tokens_file)] if self.tokens_file is not None else []
        self.keys_file: Path | None = None
        if self.tokens_file is not None:
            self.keys_file = write_keys_file(keys_file or default_keys_path(self.tokens_file) or
                                             self.tokens_file.with_name(KEYS_FILE))
            auth_args += ["--keys-file", str(self.keys_file)]
        self.tls_ca: Path | None = None
        if tls:
            tls_dir = self.data_dir / "tls"
            if not all((tls_dir / name).exists() for name in (CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE)):
                gen_certs(tls_dir)
            self.tls_ca = tls_dir / CA_FILE
            auth_args += ["--tls-cert", str(tls_dir / SERVER_CERT_FILE), "--tls-key", str(tls_dir / SERVER_KEY_FILE),
                          "--tls-ca", str(self.tls_ca)]
        self._storage_args = auth_args
        meta_args: list[str] = [*auth_args]
        if capability_ttl is not None:
            meta_args += ["--capability-ttl", str(capability_ttl)]
        if chunk_size is not None:
            meta_args += ["--default-chunk-size", str(chunk_size)]
        if heartbeat_interval is not None:
            meta_args += ["--heartbeat-interval", str(heartbeat_interval)]
        if heartbeat_timeout is not None:
            meta_args += ["--heartbeat-timeout", str(heartbeat_timeout)]
        if etcd_endpoints:  # the namespace in etcd (started by the caller), not in the meta data dir
            meta_args += ["--engine", "etcd", "--etcd", ",".join(etcd_endpoints), "--etcd-prefix", etcd_prefix]
            if etcd_max_txn_ops is not None:
                meta_args += ["--etcd-max-txn-ops", str(etcd_max_txn_ops)]
            if manager_lease is not None:
                meta_args += ["--manager-lease", str(manager_lease)]
        self._meta_args = meta_args
        self._meta_listen = meta_listen
        self._saved_metas: list[str] = saved.get("metas") or ([saved["meta"]] if saved.get("meta") else [])
        self.metas: list[ServerProcess] = [self.new_metaserver(index) for index in range(metaservers)]
        self.meta = self.metas[0]
        self.storage: list[ServerProcess] = []
        self._saved_storage: dict[str, str] = saved.get("storage", {})

    # The two factories below are where a subclass places a server elsewhere (the partition
    # tests run each one in its own network namespace, on that namespace's address).

    def new_metaserver(self, index: int) -> ServerProcess:
        """Metaserver `index`'s process, not started: the first on `meta_listen`, the others
        on a free loopback port; an address saved by an earlier start wins over port 0."""
        listen = self._meta_listen if index == 0 else "127.0.0.1:0"
        if listen.endswith(":0") and index < len(self._saved_metas):
            listen = self._saved_metas[index]
        name = "meta" if index == 0 else f"meta-{index + 1}"
        return metaserver_process(self.data_dir / name, log_path=self.data_dir / f"{name}.log", listen=listen,
                                  extra_args=self._meta_args, env=self.env)

    def new_storage(self, node_id: int) -> ServerProcess:
        """Storage node `node_id`'s process, not started, on its saved address or a free
        loopback port; it registers with every metaserver (call once they have addresses)."""
        listen = self._saved_storage.get(str(node_id)) or f"127.0.0.1:{_free_port()}"
        return storage_process(
            self.data_dir / f"node-{node_id}",
            meta=self.meta_address,
            node_id=node_id,
            targets=self.targets_per_node,
            listen=listen,
            heartbeat_interval=self.heartbeat_interval,
            log_path=self.data_dir / f"node-{node_id}.log",
            env=self.env,
            extra_args=self._storage_args,
        )

    def _load_saved(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.data_dir / "cluster.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self) -> None:
        record = {
            "meta": self.meta.address,
            "metas": [m.address for m in self.metas],
            "storage": {str(i + 1): p.address for i, p in enumerate(self.storage) if p.address},
        }
        tmp = self.data_dir / "cluster.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, self.data_dir / "cluster.json")

    @property
    def meta_address(self) -> str:
        """Every metaserver's address, comma-separated (one with one metaserver)."""
        if any(m.address is None for m in self.metas):
            raise RuntimeError("the cluster has not been started")
        return ",".join(str(m.address) for m in self.metas)

    def start(self, timeout: float = 60.0, *, progress: Callable[[str], None] | None = None) -> str:
        """Start everything, create the chains, wait until all serve; return the meta address."""
        say: Callable[[str], None] = progress or (lambda text: None)
        deadline = time.monotonic() + timeout
        try:
            for meta in self.metas:
                meta.start(timeout=max(deadline - time.monotonic(), 1.0))
                say(f"metaserver at {meta.address} (pid {meta.pid})")
            for node_id in range(1, self.nodes + 1):
                proc = self.new_storage(node_id)
                self.storage.append(proc)
                proc.start(timeout=max(deadline - time.monotonic(), 1.0))
                say(f"storage node {node_id} at {proc.address} (pid {proc.pid})")
            self._save()
            from ._admin import init_chains_sync, wait_cluster_sync

            token, ca = self.admin_token, str(self.tls_ca) if self.tls_ca is not None else None
            wait_cluster_sync(self.meta_address, deadline, nodes=self.nodes, token=token, tls_ca=ca)
            created, chains = init_chains_sync(self.meta_address, self.replicas, deadline, token=token, tls_ca=ca)
            say(f"{'created' if created else 'found'} {len(chains)} chains of {self.replicas} replicas")
            wait_cluster_sync(self.meta_address, deadline, serving=True, token=token, tls_ca=ca)
            say("every chain is serving")
        except BaseException:
            self.stop()
            raise
        return self.meta_address

    def processes(self) -> list[tuple[str, ServerProcess]]:
        metas = [("metaserver", self.meta)] if len(self.metas) == 1 else [
            (f"metaserver {i + 1}", m) for i, m in enumerate(self.metas)]
        return metas + [(f"storage node {i + 1}", p) for i, p in enumerate(self.storage)]

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process, SIGKILL any still alive after `grace` seconds.

        The metaserver goes first: its chain table then still shows every target
        SERVING, and storage servers stopped together with their clients hold the
        same committed data, so a restart on this data dir serves at once instead of
        waiting for resyncs. (Stopping storage first would make the manager record
        each leaving target OFFLINE, one after the other.)
        """
        for meta in self.metas:
            meta.terminate()
        end = time.monotonic() + grace
        for meta in self.metas:
            meta.stop(grace=max(end - time.monotonic(), 0.1))
        procs = [p for p in self.storage if p.running]
        for proc in procs:
            proc.terminate()
        end = time.monotonic() + grace
        for proc in procs:
            proc.stop(grace=max(end - time.monotonic(), 0.1))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

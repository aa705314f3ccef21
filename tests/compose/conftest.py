"""The compose suite's fixtures: real EmberFS clusters under docker-compose, made the
way CI must make them, with no registry.

    compose_engine  (session) the engine and the images' inputs: installs Debian's
                    docker.io and docker-compose when missing and starts dockerd without
                    iptables (scripts/docker-engine.sh), builds the base image, the
                    wheelhouse and etcd-debs/ (scripts/offline-images.sh). At the end:
                    dockerd stopped if this run started it, the figures reported.
    compose         (session) ComposeCluster on docker-compose.yml: builds the EmberFS
                    image with BASE_IMAGE=emberfs-base:bookworm PIP_OFFLINE=1, `up -d`,
                    waits for the init service to create the chains and for every chain
                    to serve. At the end, whatever happened: `down -v`.
    compose_etcd    (module) the same on docker-compose.etcd.yml (its own project): three
                    etcd members, two metaservers, the etcd image built from Debian's .debs.

Every step is bounded in time and prints its progress (the terminal sees it live, past
pytest's capture); the figures the tests take are printed at the end and written to
$EMBERFS_COMPOSE_FIGURES (default /tmp/emberfs-compose-figures.json).

The suite skips only when the machine cannot run an engine at all (the engine script
exits 3: not root and no engine, or dockerd dies as it starts), with the reason in the
skip line. Every test here is marked `compose` (collection hook below).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = (Path(__file__).parent / "workload.py").read_text()
PROJECT = "emberfs-citest"
ETCD_PROJECT = "emberfs-citest-etcd"
BASE_IMAGE = "emberfs-base:bookworm"
STORAGE = ("storage1", "storage2", "storage3")
CANNOT_RUN_ENGINE = 3  # scripts/docker-engine.sh's exit code for "not on this machine"

# Bounds on each step (seconds). A fresh machine: apt ~30 s, base image ~80 s, image ~60 s.
ENGINE_START_S = 420
OFFLINE_IMAGES_S = 900
BUILD_S = 600
UP_S = 240
INIT_S = 240
DOWN_S = 180
ENGINE_STOP_S = 90


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.compose)


class StepFailed(AssertionError):
    pass


@dataclass
class ComposeCluster:
    """The running stack and the verbs the tests use on it."""

    compose_cmd: list[str]  # with `-f FILE` for a file other than docker-compose.yml
    env: dict[str, str]     # COMPOSE_PROJECT_NAME names the project
    say: Any
    meta_port: int
    helper: str = ""        # the long-lived client container; default PROJECT-helper
    figures: dict[str, Any] = field(default_factory=dict)
    meta_services: tuple[str, ...] = ("meta",)

    def __post_init__(self) -> None:
        self.helper = self.helper or f"{self.env['COMPOSE_PROJECT_NAME']}-helper"

    # -- processes -------------------------------------------------------------------

    def run(self, argv: list[str], timeout: float, *, check: bool = True, input: str | None = None,
            what: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run(self.env, argv, timeout, check=check, input=input, what=what)

    def compose(self, *args: str, timeout: float, check: bool = True, input: str | None = None
                ) -> subprocess.CompletedProcess[str]:
        return self.run([*self.compose_cmd, *args], timeout, check=check, input=input)

    def step(self, what: str, argv: list[str], timeout: float) -> float:
        return _step(self.say, self.env, what, argv, timeout)

    # -- containers ------------------------------------------------------------------

    def container(self, service: str) -> str:
        # -a: `docker compose` v2 lists only running containers without it (init exits).
        ids = self.compose("ps", "-a", "-q", service, timeout=60).stdout.split()
        if not ids:
            raise StepFailed(f"no container for service {service}")
        return ids[0]

    def network(self) -> str:
        inspect = self.run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                            self.container(self.meta_services[0])], 30)
        (name,) = json.loads(inspect.stdout)
        return name

    def docker(self, *args: str, timeout: float = 60) -> str:
        return self.run(["docker", *args], timeout).stdout

    # -- the client container ----------------------------------------------------------

    def start_helper(self) -> None:
        """A long-lived client container for the tests' many calls (`docker exec` costs
        a fraction of a second; `run --rm` creates a container each time)."""
        self.run(["docker", "rm", "-f", self.helper], 60, check=False)
        self.compose("run", "-d", "--name", self.helper, "client", "sleep", "infinity", timeout=120)

    def exec(self, *argv: str, timeout: float = 60, check: bool = True, input: str | None = None
             ) -> subprocess.CompletedProcess[str]:
        flags = ["-i"] if input is not None else []
        return self.run(["docker", "exec", *flags, self.helper, *argv], timeout, check=check, input=input)

    def workload(self, mode: str, *args: str, timeout: float) -> dict[str, Any]:
        done = self.exec("python", "-c", WORKLOAD, mode, *args, timeout=timeout)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start_readers(self, *args: str, timeout: float = 90) -> subprocess.Popen[str]:
        """The `read` workload in the background, returned once its reads are running."""
        return self.start_workload("read", *args, timeout=timeout)

    def start_workload(self, mode: str, *args: str, timeout: float = 90) -> subprocess.Popen[str]:
        """A workload in the background, returned once it says it is running."""
        proc = subprocess.Popen(["docker", "exec", self.helper, "python", "-c", WORKLOAD, mode, *args],
                                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if '"ready"' not in line:
            proc.kill()
            out, err = proc.communicate()
            raise StepFailed(f"{mode} workload not running within {timeout:g} s: {line}{out}{err}")
        return proc

    @staticmethod
    def finish_workload(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise StepFailed(f"workload did not end within {timeout:g} s\n{out}{err}") from None
        if proc.returncode != 0:
            raise StepFailed(f"workload exit {proc.returncode}\n{out}{err}")
        return json.loads(out.strip().splitlines()[-1])

    def routing(self) -> dict[str, Any]:
        # 25 s: while a metaserver's container is stopped its name takes 10 s to fail to
        # resolve (our engine has no upstream DNS), and a new CLI process may try it first.
        return json.loads(self.exec("emberfs", "--timeout", "25", "cluster", "--json", timeout=60).stdout)

    def target_states(self) -> dict[int, str]:
        return {t["target_id"]: t["public_state"] for t in self.routing()["targets"]}

    def wait_all_serving(self, timeout: float) -> float:
        """Seconds until every chain's targets serve (`emberfs cluster wait` in the
        client container, polling the manager every 0.2 s)."""
        start = time.monotonic()
        self.exec("emberfs", "cluster", "wait", "--timeout", f"{timeout:g}", timeout=timeout + 30)
        return time.monotonic() - start

    def wait_targets(self, targets: set[int], state: str, timeout: float) -> float:
        start = time.monotonic()
        deadline = start + timeout
        while True:
            states = self.target_states()
            if all(states.get(t) == state for t in targets):
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                raise StepFailed(f"targets {sorted(targets)} not {state} within {timeout:g} s: {states}")
            time.sleep(0.3)

    def targets_of(self, node_id: int) -> set[int]:
        return {t["target_id"] for t in self.routing()["targets"] if t["node_id"] == node_id}


def _run(env: dict[str, str], argv: list[str], timeout: float, *, check: bool = True, input: str | None = None,
         what: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"{what or ' '.join(argv)}: no end within {timeout:g} s\n"
                         f"{_text(exc.stdout)}{_text(exc.stderr)}") from None
    if check and done.returncode != 0:
        raise StepFailed(f"{what or ' '.join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def _step(say: Callable[[str], None], env: dict[str, str], what: str, argv: list[str], timeout: float) -> float:
    """A long step, announced and timed; its output is shown only if it fails."""
    say(f"{what} (bound {timeout:g} s) ...")
    start = time.monotonic()
    _run(env, argv, timeout, what=what)
    took = time.monotonic() - start
    say(f"{what}: done in {took:.1f} s")
    return took


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compose_command(env: dict[str, str]) -> list[str]:
    if shutil.which("docker-compose", path=env["PATH"]):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True, timeout=30)
    if probe.returncode == 0:
        return ["docker", "compose"]
    raise StepFailed("neither docker-compose nor `docker compose` is installed")


@dataclass
class ComposeEngine:
    """A running engine, the images' inputs made, and what every stack shares."""

    compose_cmd: list[str]
    env: dict[str, str]  # PATH and the build settings; each stack adds its project
    say: Callable[[str], None]
    figures: dict[str, Any]


@pytest.fixture(scope="session")
def compose_engine(pytestconfig: pytest.Config) -> Iterator[ComposeEngine]:
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    session_start = time.monotonic()

    def say(text: str) -> None:
        line = f"[compose {time.monotonic() - session_start:6.1f}s] {text}"
        if capture is not None:
            with capture.global_and_fixture_disabled():
                print(line, flush=True)
        else:
            print(line, flush=True)

    env = dict(os.environ)
    # Debian's engine and compose first; `docker` itself may be a newer client elsewhere.
    env["PATH"] = "/usr/bin:/usr/sbin:" + env.get("PATH", "")
    env.update(BASE_IMAGE=BASE_IMAGE, PIP_OFFLINE="1", EMBERFS_TAG="citest", COMPOSE_HTTP_TIMEOUT="180")
    say("starting a Docker engine (scripts/docker-engine.sh start) ...")
    started = time.monotonic()
    try:
        engine = subprocess.run(["bash", "scripts/docker-engine.sh", "start"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=ENGINE_START_S)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", "scripts/docker-engine.sh", "stop"], cwd=ROOT, env=env, timeout=ENGINE_STOP_S)
        pytest.fail(f"the Docker engine did not start within {ENGINE_START_S} s")
    if engine.returncode == CANNOT_RUN_ENGINE:
        reason = engine.stderr.strip().splitlines()[-1] if engine.stderr.strip() else "unknown"
        say(f"!!! COMPOSE TESTS SKIPPED: {reason}")
        pytest.skip(f"COMPOSE TESTS SKIPPED, this machine cannot run a Docker engine: {reason}")
    if engine.returncode != 0:
        pytest.fail(f"scripts/docker-engine.sh start: exit {engine.returncode}\n{engine.stderr}")
    say(f"engine ready in {time.monotonic() - started:.1f} s: {engine.stderr.strip().splitlines()[-1]}")

    figures: dict[str, Any] = {}
    try:
        made = ComposeEngine(_compose_command(env), env, say, figures)
        figures["compose"] = " ".join(made.compose_cmd)
        figures["offline_images_s"] = round(_step(
            say, env, "base image, wheelhouse and etcd .debs (scripts/offline-images.sh)",
            ["bash", "scripts/offline-images.sh"], OFFLINE_IMAGES_S), 1)
        yield made
    finally:
        say("stopping the engine if this run started it (scripts/docker-engine.sh stop)")
        subprocess.run(["bash", "scripts/docker-engine.sh", "stop"], cwd=ROOT, env=env,
                       capture_output=True, timeout=ENGINE_STOP_S)
        total = time.monotonic() - session_start
        figures["total_s"] = round(total, 1)
        _report(figures, say)
        say(f"compose suite: {total:.1f} s in all")


@pytest.fixture(scope="session")
def compose(compose_engine: ComposeEngine) -> Iterator[ComposeCluster]:
    """docker-compose.yml: one metaserver on LMDB."""
    port = _free_port()
    env = {**compose_engine.env, "COMPOSE_PROJECT_NAME": PROJECT, "EMBERFS_META_PORT": str(port)}
    cluster = ComposeCluster(compose_engine.compose_cmd, env, compose_engine.say, port,
                             figures=compose_engine.figures)
    yield from _stack(cluster, build=("meta",))


@pytest.fixture(scope="module")
def compose_etcd(compose_engine: ComposeEngine) -> Iterator[ComposeCluster]:
    """docker-compose.etcd.yml, its own project: etcd1..3, meta1 and meta2 on them.
    Module-scoped: its ten containers run only while its tests do."""
    port, port2 = _free_port(), _free_port()
    env = {**compose_engine.env, "COMPOSE_PROJECT_NAME": ETCD_PROJECT,
           "EMBERFS_META_PORT": str(port), "EMBERFS_META2_PORT": str(port2)}
    cluster = ComposeCluster([*compose_engine.compose_cmd, "-f", "docker-compose.etcd.yml"], env,
                             compose_engine.say, port, figures=compose_engine.figures.setdefault("etcd", {}),
                             meta_services=("meta1", "meta2"))
    yield from _stack(cluster, build=("meta1", "etcd1"))


def _stack(cluster: ComposeCluster, build: tuple[str, ...]) -> Iterator[ComposeCluster]:
    """Build, `up -d`, wait for init and every chain; yield; `down -v` whatever happened."""
    project = cluster.env["COMPOSE_PROJECT_NAME"]
    try:
        cluster.compose("down", "-v", "--remove-orphans", timeout=DOWN_S)  # a crashed run's leftovers
        # One build per image: services name the same images, so `up` finds them built.
        cluster.figures["build_s"] = round(cluster.step(
            f"{project}: build {' '.join(build)}, BASE_IMAGE={BASE_IMAGE} PIP_OFFLINE=1",
            [*cluster.compose_cmd, "build", *build], BUILD_S), 1)
        up_start = time.monotonic()
        cluster.step(f"{project}: up -d", [*cluster.compose_cmd, "up", "-d"], UP_S)
        _wait_init(cluster, INIT_S)
        cluster.start_helper()
        cluster.wait_all_serving(INIT_S)
        cluster.figures["up_to_all_serving_s"] = round(time.monotonic() - up_start, 1)
        cluster.say(f"{project} up, every chain serving, {cluster.figures['up_to_all_serving_s']} s after `up -d`")
        yield cluster
    finally:
        _tear_down(cluster)


def _wait_init(cluster: ComposeCluster, timeout: float) -> None:
    """The init service exits 0 once it created the chains (or found them) and saw
    every chain serve; on-failure restarts count as not yet."""
    cluster.say("waiting for the init service (chains created by itself) ...")
    deadline = time.monotonic() + timeout
    cid = cluster.container("init")
    while True:
        state = cluster.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid).split()
        if state == ["exited", "0"]:
            logs = cluster.compose("logs", "--no-color", "init", timeout=60).stdout
            cluster.say("init: " + " | ".join(line.split("|", 1)[-1].strip() for line in logs.splitlines()
                                                if "|" in line))
            return
        if time.monotonic() >= deadline:
            logs = cluster.compose("logs", "--no-color", "--tail", "50", timeout=60).stdout
            raise StepFailed(f"init did not finish within {timeout:g} s (state {state})\n{logs}")
        time.sleep(1)


def _tear_down(cluster: ComposeCluster) -> None:
    say = cluster.say
    say(f"{cluster.env['COMPOSE_PROJECT_NAME']}: down -v ...")
    start = time.monotonic()
    try:
        cluster.run(["docker", "rm", "-f", cluster.helper], 60, check=False)
        cluster.compose("down", "-v", "--remove-orphans", timeout=DOWN_S, check=False)
    except StepFailed as exc:
        say(f"down -v failed: {exc}")
    say(f"down -v: done in {time.monotonic() - start:.1f} s")


def _report(figures: dict[str, Any], say: Callable[[str], None]) -> None:
    path = Path(os.environ.get("EMBERFS_COMPOSE_FIGURES", "/tmp/emberfs-compose-figures.json"))
    with contextlib.suppress(OSError):
        path.write_text(json.dumps(figures, indent=2) + "\n")
    say("figures: " + json.dumps(figures))

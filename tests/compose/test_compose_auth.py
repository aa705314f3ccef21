"""docker-compose.auth.yml over docker-compose.yml: the same stack with tokens. A second
compose project on the image the suite already built: every service starts with the
generated tokens file, the client container's admin token reads and writes, and a
client without a token is refused."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

# The fixture's class, by its fixture only: test modules import no conftest
# (--import-mode=importlib); `type(compose)` makes a second one.
ComposeCluster = Any

AUTH_PROJECT = "emberfs-citest-auth"
UP_S, INIT_S, DOWN_S = 240, 240, 180  # as conftest's bounds


def test_the_tokens_override_guards_the_cluster(compose: ComposeCluster) -> None:
    port = _free_port()
    auth = type(compose)(
        [*compose.compose_cmd, "-f", "docker-compose.yml", "-f", "docker-compose.auth.yml"],
        {**compose.env, "COMPOSE_PROJECT_NAME": AUTH_PROJECT, "EMBERFS_META_PORT": str(port)},
        compose.say, port,
    )
    try:
        up = time.monotonic()
        auth.step("auth stack: up -d", [*auth.compose_cmd, "up", "-d"], UP_S)
        _wait_exited_0(auth, "init", INIT_S)
        compose.figures["auth_up_to_init_done_s"] = round(time.monotonic() - up, 1)
        data = os.urandom(1 << 20).hex()  # text through `-T` stdin
        put = auth.compose("run", "--rm", "-T", "client", "sh", "-c",
                           "cat > /tmp/x && emberfs put -q /tmp/x /auth.hex && emberfs cat /auth.hex",
                           input=data, timeout=180)
        assert put.stdout == data  # the admin token (EMBERFS_TOKEN_FILE) wrote and read it back
        refused = auth.compose("run", "--rm", "-T", "client", "sh", "-c",
                               "unset EMBERFS_TOKEN_FILE EMBERFS_TOKEN; emberfs ls /", timeout=120, check=False)
        assert refused.returncode != 0, refused.stdout
        assert "token" in refused.stderr.lower(), refused.stderr
        compose.say("auth stack: the admin token wrote and read 2 MiB of text; a client without a token "
                    f"was refused: {refused.stderr.strip().splitlines()[-1]}")
    finally:
        auth.compose("down", "-v", "--remove-orphans", timeout=DOWN_S, check=False)


def _wait_exited_0(cluster: ComposeCluster, service: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    cid = cluster.container(service)
    while True:
        state = cluster.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid).split()
        if state == ["exited", "0"]:
            return
        if time.monotonic() >= deadline:
            logs = cluster.compose("logs", "--no-color", "--tail", "40", timeout=60).stdout
            raise AssertionError(f"{service} did not finish within {timeout:g} s (state {state})\n{logs}")
        time.sleep(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

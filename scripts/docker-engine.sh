#!/usr/bin/env bash
# A Docker engine for machines that have none (our CI): `start` installs Debian's
# docker.io and docker-compose when missing and starts dockerd in the background;
# `stop` stops the dockerd that `start` started (an engine that was already running,
# a developer's own, is never touched); `status` says which.
#
# dockerd runs with --iptables=false --ip-masq=false --ip-forward=false, so the host's
# firewall and forwarding are left alone: containers talk to each other over the
# compose network's bridge, and nothing needs outbound network (images come from
# scripts/offline-images.sh, not a registry).
#
# Exit codes: 0 done; 1 failed; 3 this machine cannot run an engine here (not root
# and no engine, no apt-get, or dockerd dies as it starts) -- the compose tests skip,
# loudly, on 3 only.
set -euo pipefail

STATE_DIR="${EMBERFS_DOCKERD_STATE:-/run/emberfs-dockerd}"   # pid of the dockerd we started
LOG="${EMBERFS_DOCKERD_LOG:-/tmp/emberfs-dockerd.log}"
SOCK=/var/run/docker.sock
START_TIMEOUT_S="${EMBERFS_DOCKERD_START_TIMEOUT:-60}"
INSTALL_TIMEOUT_S="${EMBERFS_DOCKER_INSTALL_TIMEOUT:-300}"
# Debian's client and engine go together; a newer client earlier on PATH also works
# (it negotiates the API version), but prefer the pair.
export PATH="/usr/bin:/usr/sbin:$PATH"

say() { echo "[docker-engine] $*" >&2; }
cannot() { say "CANNOT RUN A DOCKER ENGINE HERE: $*"; exit 3; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || cannot "not root, so cannot install ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 || cannot "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]} from Debian (bounded by ${INSTALL_TIMEOUT_S}s)"
    export DEBIAN_FRONTEND=noninteractive
    timeout "$INSTALL_TIMEOUT_S" apt-get update -q >/dev/null \
        || { say "apt-get update failed"; exit 1; }
    timeout "$INSTALL_TIMEOUT_S" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || { say "apt-get install ${missing[*]} failed"; exit 1; }
}

start() {
    if engine_answers; then
        say "an engine already answers on $(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || echo $SOCK); using it"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        cannot "no engine answers and only root can start dockerd (uid $(id -u))"
    fi
    install_packages
    mkdir -p "$STATE_DIR"
    say "starting dockerd --iptables=false --ip-masq=false --ip-forward=false (log: $LOG)"
    # setsid: dockerd outlives this script and is not in the caller's process group.
    setsid dockerd --host "unix://$SOCK" --iptables=false --ip-masq=false --ip-forward=false \
        >"$LOG" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" > "$STATE_DIR/pid"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until engine_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$STATE_DIR/pid"
            tail -n 15 "$LOG" >&2 || true
            cannot "dockerd exited while starting (last lines of $LOG above)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 15 "$LOG" >&2 || true
            say "dockerd did not answer within ${START_TIMEOUT_S}s; stopping it"
            stop
            exit 1
        fi
        sleep 0.5
    done
    say "dockerd (pid $pid) answers: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}')"
}

stop() {
    local pidfile="$STATE_DIR/pid"
    if [ ! -f "$pidfile" ]; then
        say "no dockerd of ours to stop"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        # dockerd stops its containers first (10 s each at most); then containerd.
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            say "dockerd still running after 30 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

status() {
    if engine_answers; then
        if [ -f "$STATE_DIR/pid" ]; then echo "running (started by this script, pid $(cat "$STATE_DIR/pid"))"
        else echo "running (not ours)"; fi
    else
        echo "not running"
        return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

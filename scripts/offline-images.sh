#!/usr/bin/env bash
# For machines with a Docker engine but no image registry (our CI): make what the
# Dockerfile needs without pulling anything.
#
#   1. the base image emberfs-base:bookworm, from Debian's own packages:
#        mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
#            bookworm - | docker import - emberfs-base:bookworm
#      (Python 3.11 from bookworm; PATH set at import, since an imported image has none)
#   2. wheelhouse/: EmberFS's runtime dependencies (and setuptools, to build EmberFS
#      itself) as wheels for that Python: CPython 3.11, manylinux x86_64.
#   3. etcd-debs/: Debian's etcd-server and etcd-client .debs, for Dockerfile.etcd
#      (docker-compose.etcd.yml), fetched with `apt-get download` on this (bookworm) host.
#
# Then:  BASE_IMAGE=emberfs-base:bookworm PIP_OFFLINE=1 docker-compose up -d --build
#   or:  BASE_IMAGE=emberfs-base:bookworm PIP_OFFLINE=1 docker-compose -f docker-compose.etcd.yml up -d --build
#
# Idempotent and fast when done: the image is kept if it exists (--rebuild-base makes
# it again), and the wheelhouse is refilled only when pyproject.toml's dependencies
# changed; the .debs are fetched when etcd-debs/ has none. Needs root for mmdebstrap (or mmdebstrap's unshare mode), pip, and network
# access to Debian's mirror and PyPI -- once; the results work offline.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${BASE_IMAGE_NAME:-emberfs-base:bookworm}"
WHEELHOUSE="$ROOT/wheelhouse"
ETCD_DEBS="$ROOT/etcd-debs"
ETCD_PACKAGES=(etcd-server etcd-client)
BUILD_TIMEOUT_S="${EMBERFS_BASE_BUILD_TIMEOUT:-600}"
PIP_TIMEOUT_S="${EMBERFS_WHEELS_TIMEOUT:-300}"
PY_VERSION=3.11
# bookworm's glibc is 2.36: any manylinux wheel up to that runs. Older pips do not
# expand one tag to the older ones, so every tag in use is named.
PLATFORMS=(manylinux1_x86_64 manylinux2010_x86_64 manylinux2014_x86_64)
for glibc in 5 12 17 24 27 28 31 34 35 36; do PLATFORMS+=("manylinux_2_${glibc}_x86_64"); done
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH="/usr/bin:/usr/sbin:$PATH"

say() { echo "[offline-images] $*" >&2; }

rebuild=0
for arg in "$@"; do
    case "$arg" in
        --rebuild-base) rebuild=1 ;;
        *) echo "usage: $0 [--rebuild-base]" >&2; exit 2 ;;
    esac
done

base_image() {
    if [ "$rebuild" -eq 0 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE exists; kept"
        return 0
    fi
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || { say "mmdebstrap is missing and only root can install it"; exit 1; }
        say "installing mmdebstrap from Debian"
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null \
            || { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null &&
                 DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null; }
    fi
    say "building $BASE_IMAGE with mmdebstrap (bookworm minbase + python3, python3-venv, ca-certificates; about 1-2 min)"
    local log
    log="$(mktemp)"
    # pipefail: a failed mmdebstrap fails the import too, so no half image is tagged.
    if ! timeout "$BUILD_TIMEOUT_S" bash -o pipefail -c \
        "mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm - 2>'$log' \
         | docker import --change 'ENV PATH=$IMAGE_PATH' --change 'CMD [\"/bin/bash\"]' \
           --message 'Debian bookworm minbase + python3 (scripts/offline-images.sh)' - '$BASE_IMAGE' >/dev/null"; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        say "building $BASE_IMAGE failed"
        exit 1
    fi
    rm -f "$log"
    say "$BASE_IMAGE: $(docker run --rm "$BASE_IMAGE" python3 --version)"
}

wheels() {
    local deps stamp want
    # The runtime dependencies exactly as pyproject.toml states them, and the build
    # backend pip needs to build EmberFS itself with --no-index.
    deps="$(python3 - "$ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join([*project["project"]["dependencies"], *project["build-system"]["requires"]]))
EOF
)"
    stamp="$WHEELHOUSE/.stamp"
    want="$(printf '%s\n%s %s\n' "$deps" "$PY_VERSION" "${PLATFORMS[*]}" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "wheelhouse/ is up to date ($(ls "$WHEELHOUSE"/*.whl | wc -l) wheels); kept"
        return 0
    fi
    say "filling wheelhouse/ for CPython $PY_VERSION, manylinux x86_64 (glibc <= 2.36)"
    mkdir -p "$WHEELHOUSE"
    rm -f "$WHEELHOUSE"/*.whl
    local reqs
    reqs="$(mktemp)"
    printf '%s\n' "$deps" > "$reqs"
    if ! timeout "$PIP_TIMEOUT_S" python3 -m pip download --quiet --disable-pip-version-check \
        --only-binary=:all: --python-version "$PY_VERSION" --implementation cp --abi cp311 \
        "${PLATFORMS[@]/#/--platform=}" --dest "$WHEELHOUSE" -r "$reqs" 2>"$reqs.log"; then
        cat "$reqs.log" >&2
        rm -f "$reqs" "$reqs.log"
        say "pip download failed"
        exit 1
    fi
    rm -f "$reqs" "$reqs.log"
    echo "$want" > "$stamp"
    say "wheelhouse/: $(ls "$WHEELHOUSE"/*.whl | wc -l) wheels"
}

etcd_debs() {
    if ls "$ETCD_DEBS"/etcd-server_*.deb "$ETCD_DEBS"/etcd-client_*.deb >/dev/null 2>&1; then
        say "etcd-debs/ holds $(cd "$ETCD_DEBS" && echo *.deb); kept"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || { say "no apt-get to download ${ETCD_PACKAGES[*]} (a Debian bookworm host is needed)"; exit 1; }
    # The packages must be bookworm's: the etcd image is built on emberfs-base:bookworm.
    if ! grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then
        say "this host is not Debian bookworm; etcd-debs/ would not match the base image"
        exit 1
    fi
    say "downloading ${ETCD_PACKAGES[*]} into etcd-debs/"
    mkdir -p "$ETCD_DEBS"
    local tmp
    tmp="$(mktemp -d)"
    # Into a temporary folder first (apt's _apt user may write there), so a failed
    # download leaves no partial .deb in etcd-debs/.
    chmod 777 "$tmp"
    if ! (cd "$tmp" && timeout 300 apt-get download -q "${ETCD_PACKAGES[@]}" >/dev/null 2>"$tmp/log"); then
        if ! (timeout 300 apt-get update -q >/dev/null 2>&1 &&
              cd "$tmp" && timeout 300 apt-get download -q "${ETCD_PACKAGES[@]}" >/dev/null 2>"$tmp/log"); then
            cat "$tmp/log" >&2
            rm -rf "$tmp"
            say "apt-get download ${ETCD_PACKAGES[*]} failed"
            exit 1
        fi
    fi
    mv "$tmp"/*.deb "$ETCD_DEBS"/
    rm -rf "$tmp"
    say "etcd-debs/: $(cd "$ETCD_DEBS" && echo *.deb)"
}

command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1 \
    || { say "no Docker engine answers (bash scripts/docker-engine.sh start)"; exit 1; }
base_image
wheels
etcd_debs
say "ready: BASE_IMAGE=$BASE_IMAGE PIP_OFFLINE=1 docker-compose [-f docker-compose.etcd.yml] up -d --build"

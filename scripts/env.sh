# Sourced by the other scripts: make sure .venv exists and holds this checkout's
# package, test and benchmark dependencies. Re-installs only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EMBERFS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[env] creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.emberfs-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
# pip's output goes to stderr without the harmless 'WARNING: Location' lines; a failed
# install stops here with that output, not later at an import. pipefail makes the
# pipeline's status pip's (the grep's "nothing left to print" is not a failure).
_env_pip_install() {
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
            | { grep -v '^WARNING: Location' || true; } >&2; then
        echo "[env] pip install $* failed (its output is above)" >&2
        exit 1
    fi
}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[env] installing emberfs and its test dependencies into $VENV" >&2
    # A newer pip is welcome, not required: its failure is forgiven.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 \
        | { grep -v '^WARNING: Location' || true; } >&2 || true
    _env_pip_install -e "$ROOT[test,bench,fsspec,torch,fast]"
    "$VENV/bin/python" -c "import emberfs.client, emberfs.metaserver, lmdb, grpc, pytest" \
        || { echo "[env] install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
unset -f _env_pip_install
export PATH="$VENV/bin:$PATH"

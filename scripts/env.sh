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
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[env] installing emberfs and its test dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test,bench,fsspec,torch,fast]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$VENV/bin/python" -c "import emberfs.client, emberfs.metaserver, lmdb, grpc, pytest" \
        || { echo "[env] install failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

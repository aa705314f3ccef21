#!/usr/bin/env bash
# The README's test command: every test, unit and integration (real processes on
# 127.0.0.1). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not faults"`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec python -m pytest "$@"

#!/usr/bin/env bash
# The linters CI runs before the tests: ruff over the whole tree and mypy over the product
# packages (their settings are in pyproject.toml). Both run; the exit status is non-zero
# when either finds something.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
status=0
ruff check . || status=1
mypy || status=1
exit "$status"

#!/usr/bin/env bash
# The linters CI runs before the tests: ruff over the whole tree and mypy over the product
# packages (their settings are in pyproject.toml). Both run; the exit status is non-zero
# when either finds something.
#
# mypy checks the packages as `emberfs.*`, the names they import each other by, from a
# temporary directory holding an `emberfs` link to the checkout: through the editable
# install's import hook mypy cannot see them, and would take every cross-package import
# as Any (a wrong argument type between client/ and common/ would pass).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
status=0
ruff check . || status=1
view="$(mktemp -d)"
trap 'rm -rf "$view"' EXIT
ln -s "$ROOT" "$view/emberfs"
(cd "$view" && mypy --config-file "$ROOT/pyproject.toml" -p emberfs.common -p emberfs.metaserver \
    -p emberfs.storage -p emberfs.client -p emberfs.bench) || status=1
exit "$status"

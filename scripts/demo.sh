#!/usr/bin/env bash
# The README's main job. Creates the environment, starts a local EmberFS
# metaserver on 127.0.0.1, walks through the namespace with the `emberfs` CLI,
# and stops the server. (The data path arrives with the storage servers; this
# demo then becomes the data-loader run.)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec python scripts/demo.py "$@"

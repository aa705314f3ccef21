#!/usr/bin/env bash
# The README's main job, one command on a fresh machine: creates the environment
# (.venv, with torch's CPU build), starts a local EmberFS cluster (a metaserver and
# 3 storage servers on 127.0.0.1), writes a synthetic dataset as record shards, reads
# one epoch through a torch DataLoader with workers, prints samples/s and MiB/s next
# to the same loader over local files, and stops the cluster. Options: see
# `bash scripts/demo.sh --help`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec python scripts/demo.py "$@"

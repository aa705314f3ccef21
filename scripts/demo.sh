#!/usr/bin/env bash
# The README's main job, one command on a fresh machine: creates the environment
# (.venv, with torch's CPU build), starts a local EmberFS cluster (a metaserver and
# 3 storage servers on 127.0.0.1), writes a 1 GiB synthetic dataset as record shards
# (larger than the datasets' caches), reads one cold epoch per row through a torch
# DataLoader with workers from EmberFS, from the same shards on local disk and from
# nginx over HTTP, prints them with the headline ratios, and stops the cluster.
# About a minute once the environment exists. Options: `bash scripts/demo.sh --help`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec python scripts/demo.py "$@"

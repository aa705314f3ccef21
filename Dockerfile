# EmberFS: one image for the metaserver, the storage servers and the CLI.
#
#   docker-compose up -d --build                      # base image and wheels from the registries
#   BASE_IMAGE=emberfs-base:bookworm PIP_OFFLINE=1 \
#       docker-compose up -d --build                  # no registry: scripts/offline-images.sh first
#
# BASE_IMAGE must give `python3` 3.11+ with the venv module on PATH. With PIP_OFFLINE=1
# every Python package comes from wheelhouse/ and pip never reaches an index.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG PIP_OFFLINE=0
ENV VIRTUAL_ENV=/opt/emberfs \
    PATH=/opt/emberfs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python3 -m venv /opt/emberfs

# Dependencies first, in their own layer: rebuilt only when pyproject.toml or the
# wheelhouse changes, not on every source edit.
COPY pyproject.toml /src/pyproject.toml
COPY wheelhouse/ /wheelhouse/
RUN set -eu; \
    if [ "$PIP_OFFLINE" = 1 ]; then index="--no-index"; else index=""; fi; \
    python3 -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb")); print("\n".join(p["project"]["dependencies"]))' \
        /src/pyproject.toml > /src/requirements.txt; \
    pip install --quiet $index --find-links /wheelhouse -r /src/requirements.txt

COPY README.md /src/README.md
COPY proto/ /src/proto/
COPY common/ /src/common/
COPY metaserver/ /src/metaserver/
COPY storage/ /src/storage/
COPY client/ /src/client/
COPY bench/ /src/bench/
RUN set -eu; \
    if [ "$PIP_OFFLINE" = 1 ]; then index="--no-index"; else index=""; fi; \
    pip install --quiet $index --find-links /wheelhouse --no-deps /src; \
    rm -rf /src /wheelhouse; \
    emberfs --help > /dev/null

# Services run as an unprivileged user; their data lives under /var/lib/emberfs (a
# named volume per service in docker-compose.yml, which takes this owner on creation).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/emberfs --shell /usr/sbin/nologin emberfs \
    && mkdir -p /var/lib/emberfs \
    && chown emberfs:emberfs /var/lib/emberfs
USER emberfs
WORKDIR /var/lib/emberfs

# 9000: metaserver (namespace + cluster manager); 8000: storage server.
EXPOSE 9000 8000
CMD ["emberfs", "--help"]

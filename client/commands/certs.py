"""`emberfs admin gen-certs DIR [--hosts h1,h2]`: a small CA and one server certificate
for TLS (common/tls.py makes them with the `openssl` command). No cluster call.

DIR gets ca.pem, ca.key, server.pem and server.key (keys 0600). The server certificate
covers localhost, 127.0.0.1 and --hosts (compose: meta,storage1,storage2,storage3).
Servers take --tls-cert DIR/server.pem --tls-key DIR/server.key (and --tls-ca
DIR/ca.pem to call each other); clients --tls-ca DIR/ca.pem.
"""

from __future__ import annotations

from emberfs.common.tls import TlsError, gen_certs

from ._base import CliContext

__all__ = ["gen_certs_command"]


def gen_certs_command(ctx: CliContext, directory: str | None, hosts: str) -> int:
    if not directory:
        print("emberfs: admin gen-certs: a directory is required", file=ctx.err)
        return 2
    names = [h.strip() for h in hosts.split(",") if h.strip()]
    try:
        paths = gen_certs(directory, names)
    except (TlsError, OSError) as exc:
        print(f"emberfs: admin gen-certs: {exc}", file=ctx.err)
        return 1
    ctx.print(f"CA:                 {paths['ca']} (its key {paths['ca_key']}: keep it private)")
    ctx.print(f"server certificate: {paths['cert']}  key: {paths['key']}")
    ctx.print(f"servers: --tls-cert {paths['cert']} --tls-key {paths['key']} --tls-ca {paths['ca']}")
    ctx.print(f"clients: --tls-ca {paths['ca']}   (or EMBERFS_TLS_CA, Client(tls_ca=...))")
    return 0

"""Optional TLS for gRPC and the bulk channel: one place that turns PEM paths into
gRPC credentials and standard-library SSL contexts, and that makes test certificates.

- A server with `--tls-cert` and `--tls-key` (ServerTls) serves gRPC on a secure
  port and the bulk channel through an ssl.SSLContext; without them it serves
  plaintext, as before. Client certificates are not asked for: tokens authenticate.
- A client with a CA (`tls_ca`: the PEM path of the CA that signed the servers'
  certificates) opens TLS channels and verifies the server's certificate and name;
  without one it opens plaintext channels. Servers are clients too (the storage agent,
  chain peers, the metaserver's GC): they use their `--tls-ca`.
- `gen_certs(DIR)` makes a small CA and one server certificate whose subjectAltName
  covers localhost, 127.0.0.1 and the given hosts, with the `openssl` command.

Paths, not contexts, travel (a SyncClient pickles its options); a CA's context is built
once per path. Files are read and checked when a server starts (TlsError: exit 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import grpc

__all__ = [
    "CA_FILE",
    "CA_KEY_FILE",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "TLS_CA_ENV",
    "TLS_CERT_ENV",
    "TLS_KEY_ENV",
    "ServerTls",
    "TlsError",
    "add_port",
    "add_tls_arguments",
    "aio_channel",
    "channel_credentials",
    "check_ca",
    "client_ssl_context",
    "gen_certs",
    "server_tls",
    "sync_channel",
    "tls_from_args",
    "tls_ca_from_env",
]

TLS_CERT_ENV = "EMBERFS_TLS_CERT"  # servers: the default of --tls-cert
TLS_KEY_ENV = "EMBERFS_TLS_KEY"  # servers: the default of --tls-key
TLS_CA_ENV = "EMBERFS_TLS_CA"  # servers and clients: the default of --tls-ca / tls_ca=
CA_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE = "ca.pem", "ca.key", "server.pem", "server.key"
CERT_DAYS = 825


class TlsError(ValueError):
    """A certificate, key or CA file that cannot be read or used."""


@dataclasses.dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and private key (PEM), checked to load together."""

    cert_path: str
    key_path: str
    cert_pem: bytes = dataclasses.field(repr=False)
    key_pem: bytes = dataclasses.field(repr=False)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def server_tls(cert: str | None, key: str | None) -> ServerTls | None:
    """The server's TLS from --tls-cert/--tls-key: None when both are unset."""
    if cert is None and key is None:
        return None
    if not cert or not key:
        raise TlsError("--tls-cert and --tls-key go together")
    try:
        tls = ServerTls(cert, key, Path(cert).read_bytes(), Path(key).read_bytes())
        tls.ssl_context()  # the pair loads and matches
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use TLS certificate {cert} with key {key}: {exc}") from None
    return tls


def tls_ca_from_env() -> str | None:
    return os.environ.get(TLS_CA_ENV) or None


def check_ca(ca: str) -> None:
    """Raise TlsError unless `ca` is a readable PEM CA file."""
    try:
        client_ssl_context(ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use TLS CA file {ca}: {exc}") from None


def channel_credentials(ca: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=_read_ca(ca))


@functools.lru_cache(maxsize=16)
def _read_ca(ca: str) -> bytes:
    return Path(ca).read_bytes()


@functools.lru_cache(maxsize=16)
def client_ssl_context(ca: str) -> ssl.SSLContext:
    """A context that verifies servers against the CA at `ca` (and their names)."""
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def add_port(server: grpc.aio.Server, listen: str, tls: ServerTls | None) -> int:
    """Bind `listen` (secure with TLS); the bound port (0: grpc could not bind)."""
    try:
        if tls is not None:
            return server.add_secure_port(listen, tls.credentials())
        return server.add_insecure_port(listen)
    except RuntimeError as exc:  # grpc raises when the address cannot be bound
        raise OSError(f"cannot listen on {listen}: {exc}") from exc


def _subject_alt_names(hosts: list[str]) -> str:
    names: list[str] = []
    for host in ["localhost", "127.0.0.1", *hosts]:
        try:
            entry = f"IP:{ipaddress.ip_address(host.strip('[]'))}"
        except ValueError:
            entry = f"DNS:{host}"
        if entry not in names:
            names.append(entry)
    return ",".join(names)


def gen_certs(directory: str | Path, hosts: list[str] | tuple[str, ...] = ()) -> dict[str, Path]:
    """Make ca.pem/ca.key and server.pem/server.key (keys 0600) in `directory` with the
    `openssl` command; the server certificate names localhost, 127.0.0.1 and `hosts`.
    Existing files are replaced. The paths by name ("ca", "ca_key", "cert", "key")."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("gen-certs needs the openssl command on PATH")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"ca": out / CA_FILE, "ca_key": out / CA_KEY_FILE, "cert": out / SERVER_CERT_FILE,
             "key": out / SERVER_KEY_FILE}
    old_umask = os.umask(0o077)  # keys are never readable by others, not even for a moment
    try:
        with tempfile.TemporaryDirectory(dir=out) as scratch:
            csr, ext = Path(scratch) / "server.csr", Path(scratch) / "ext.cnf"
            ext.write_text(f"subjectAltName={_subject_alt_names(list(hosts))}\n"
                           "basicConstraints=critical,CA:FALSE\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=serverAuth\n")
            steps = [
                [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", paths["ca_key"], "-out", paths["ca"], "-days", str(CERT_DAYS),
                 "-subj", "/CN=EmberFS test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                [openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", paths["key"], "-out", csr, "-subj", "/CN=emberfs"],
                [openssl, "x509", "-req", "-in", csr, "-CA", paths["ca"], "-CAkey", paths["ca_key"],
                 "-CAcreateserial", "-CAserial", Path(scratch) / "ca.srl", "-out", paths["cert"],
                 "-days", str(CERT_DAYS), "-extfile", ext],
            ]
            for argv in steps:
                done = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
                if done.returncode != 0:
                    raise TlsError(f"openssl failed: {done.stderr.strip()[-500:]}")
    finally:
        os.umask(old_umask)
    for name in ("ca_key", "key"):
        paths[name].chmod(0o600)
    for name in ("ca", "cert"):
        paths[name].chmod(0o644)
    return paths


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--tls-cert/--tls-key (serve TLS) and --tls-ca (verify the servers this one calls),
    shared by emberfs-meta and emberfs-storage; defaults from the environment."""
    parser.add_argument("--tls-cert", default=os.environ.get(TLS_CERT_ENV) or None, metavar="PEM",
                        help="serve gRPC and the bulk channel over TLS with this certificate chain "
                             f"(needs --tls-key; default: ${TLS_CERT_ENV})")
    parser.add_argument("--tls-key", default=os.environ.get(TLS_KEY_ENV) or None, metavar="PEM",
                        help=f"the private key of --tls-cert (default: ${TLS_KEY_ENV})")
    parser.add_argument("--tls-ca", default=tls_ca_from_env(), metavar="PEM",
                        help="call other EmberFS servers over TLS, verifying them against this CA "
                             f"(default: ${TLS_CA_ENV})")


def tls_from_args(args: argparse.Namespace) -> tuple[ServerTls | None, str | None]:
    """(the server's TLS, the CA path it verifies others with); TlsError on bad files."""
    if args.tls_ca:
        check_ca(args.tls_ca)
    return server_tls(args.tls_cert, args.tls_key), args.tls_ca or None


def sync_channel(address: str, tls_ca: str | None, options: list[tuple[str, int]]) -> grpc.Channel:
    """A blocking channel (CLI and launch helpers): TLS verified by `tls_ca` when given."""
    if tls_ca:
        return grpc.secure_channel(address, channel_credentials(tls_ca), options=options)
    return grpc.insecure_channel(address, options=options)


def aio_channel(address: str, tls_ca: str | None, options: list[tuple[str, int]],
                interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None) -> grpc.aio.Channel:
    """An aio channel: TLS verified by `tls_ca` when given (authgrpc.open_channel adds tokens)."""
    if tls_ca:
        return grpc.aio.secure_channel(address, channel_credentials(tls_ca), options=options,
                                       interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)

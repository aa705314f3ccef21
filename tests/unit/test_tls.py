"""common/tls.py: names in the server certificate, the flags and their env defaults,
refusals of unusable files (the gRPC/bulk round trips are in tests/integration/test_tls.py)."""

from __future__ import annotations

import argparse
import shutil
import ssl
from pathlib import Path

import pytest

from emberfs.common.tls import (
    TlsError, _subject_alt_names, add_tls_arguments, check_ca, gen_certs, server_tls, tls_from_args,
)


# gen_certs runs the openssl command
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.mark.parametrize("hosts, expected", [
    ([], "DNS:localhost,IP:127.0.0.1"),
    (["meta", "storage1"], "DNS:localhost,IP:127.0.0.1,DNS:meta,DNS:storage1"),
    (["10.0.0.7", "::1", "[fe80::1]", "localhost", "127.0.0.1"],
     "DNS:localhost,IP:127.0.0.1,IP:10.0.0.7,IP:::1,IP:fe80::1"),
])
def test_subject_alt_names(hosts: list[str], expected: str) -> None:
    assert _subject_alt_names(hosts) == expected


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return gen_certs(tmp_path_factory.mktemp("certs"), ["meta"])


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_tls_arguments(parser)
    return parser.parse_args(argv)


def test_flags_and_env_defaults(certs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls_from_args(_args([])) == (None, None)
    monkeypatch.setenv("EMBERFS_TLS_CERT", str(certs["cert"]))
    monkeypatch.setenv("EMBERFS_TLS_KEY", str(certs["key"]))
    monkeypatch.setenv("EMBERFS_TLS_CA", str(certs["ca"]))
    tls, ca = tls_from_args(_args([]))
    assert tls is not None and tls.cert_path == str(certs["cert"]) and ca == str(certs["ca"])
    assert "BEGIN" not in repr(tls)  # the key's PEM never in a repr
    assert isinstance(tls.ssl_context(), ssl.SSLContext)


@pytest.mark.parametrize("case", ["cert only", "key only", "missing cert", "mismatched key"])
def test_unusable_server_files(case: str, certs: dict[str, Path], tmp_path: Path) -> None:
    cert, key = {
        "cert only": (str(certs["cert"]), None),
        "key only": (None, str(certs["key"])),
        "missing cert": (str(tmp_path / "absent.pem"), str(certs["key"])),
        "mismatched key": (str(certs["cert"]), str(certs["ca_key"])),
    }[case]
    with pytest.raises(TlsError):
        server_tls(cert, key)


def test_unusable_ca(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    for path in (tmp_path / "absent.pem", tmp_path / "junk.pem"):
        with pytest.raises(TlsError, match="TLS CA file"):
            check_ca(str(path))

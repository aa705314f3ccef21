"""The committed generated modules in proto/ must match what proto/gen.py makes now."""

import pathlib

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools is a test extra")

from emberfs.proto import gen  # noqa: E402


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    written = gen.generate(tmp_path)
    assert written, "gen.py produced nothing"
    stale = [p.name for p in written if p.read_bytes() != (gen.PROTO_DIR / p.name).read_bytes()]
    assert not stale, f"stale generated files {stale}: run `python proto/gen.py` and commit"
    committed = {p.name for p in gen.PROTO_DIR.glob("*_pb2*.py*")}
    assert committed == {p.name for p in written}, "generated files and committed files differ"


def test_generated_modules_import() -> None:
    from emberfs.proto import meta_pb2, meta_pb2_grpc, mgmt_pb2_grpc, storage_pb2_grpc

    assert meta_pb2.Inode(inode_id=1).inode_id == 1
    for module, service in ((meta_pb2_grpc, "Meta"), (mgmt_pb2_grpc, "Mgmt"), (storage_pb2_grpc, "Storage")):
        assert hasattr(module, f"{service}Stub") and hasattr(module, f"{service}Servicer")

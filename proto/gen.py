"""Regenerate the protobuf/gRPC Python modules (and .pyi stubs) from proto/*.proto.

Run `python proto/gen.py` after editing a .proto file. The .proto files import each
other as "emberfs/proto/x.proto", so the generated modules import
`emberfs.proto.x_pb2`; a temporary include root maps that name onto this folder.
tests/unit/test_proto_fresh.py fails when the committed modules are stale.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

PROTO_DIR = pathlib.Path(__file__).resolve().parent
# etcd_*.proto: the subset of etcd's v3 API the etcd engine speaks (packages mvccpb and
# etcdserverpb, as etcd has them); the modules are named etcd_* so none can shadow
# another project's etcd modules.
PROTO_FILES = ("common.proto", "meta.proto", "mgmt.proto", "storage.proto", "etcd_kv.proto", "etcd_rpc.proto")


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Generate into out_dir; return the files written."""
    from grpc_tools import protoc  # a build-time tool, not a runtime dependency

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "emberfs").mkdir()
        (root / "emberfs" / "proto").symlink_to(PROTO_DIR)
        stage = root / "out"
        stage.mkdir()
        args = [
            "protoc",
            f"-I{root}",
            f"--python_out={stage}",
            f"--pyi_out={stage}",
            f"--grpc_python_out={stage}",
        ] + [f"{root}/emberfs/proto/{name}" for name in PROTO_FILES]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        written = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted((stage / "emberfs" / "proto").iterdir()):
            target = out_dir / path.name
            target.write_bytes(path.read_bytes())
            written.append(target)
        return written


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR
    for written in generate(out):
        print(written)

"""Random operation sequences against the chunk store and a dict-of-bytearray model.

Every step is checked in full: each chunk's bytes, version, length and CRC, the
listing, the totals and the last chunk per inode. Aborted updates, crashes (a
prepared update left behind by a store that is closed and reopened: a whole one is
kept pending), removes (a tombstone keeps the version) and GC (the file is gone for
good) are mixed in. Runs on tmpfs when there is one: fsync there is free, the logic is not.
"""

from __future__ import annotations

import os
import tempfile

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberfs.common.errors import NotFound
from emberfs.storage.chunkstore import ChunkStore
from emberfs.storage.records import ChunkId, UpdateKind

CS = 32
INODES = (1, 2)
CHUNKS = [ChunkId(i, c) for i in INODES for c in range(3)]
TMP_BASE = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None

# Mostly one chunk, so updates build on each other; sometimes any.
chunk_st = st.one_of(st.just(CHUNKS[0]), st.just(CHUNKS[0]), st.sampled_from(CHUNKS))
fate_st = st.sampled_from(["commit", "commit", "commit", "abort", "crash"])


@st.composite
def write_st(draw):
    offset = draw(st.integers(0, CS))
    # st.binary favours short data; a uniform length reaches "long overwrites" too.
    size = draw(st.integers(0, CS - offset))
    patterned = bytes((offset + i) % 251 + 1 for i in range(size))
    data = draw(st.just(patterned) | st.binary(max_size=CS - offset))
    return ("write", draw(chunk_st), offset, data, draw(fate_st))


op_st = st.one_of(
    write_st(),
    write_st(),
    write_st(),
    st.tuples(st.just("truncate"), chunk_st, st.integers(0, CS), fate_st),
    st.tuples(st.just("replace"), chunk_st, st.binary(max_size=CS), fate_st),
    st.tuples(st.just("remove"), chunk_st, fate_st),
    st.tuples(st.just("remove_inode"), st.sampled_from(INODES)),
    st.tuples(st.just("reopen")),
)


def model_apply(model: dict[ChunkId, bytearray], op) -> None:
    kind, cid = op[0], op[1]
    buf = model.get(cid, bytearray())
    if kind == "write":
        offset, data = op[2], op[3]
        if data:
            if offset > len(buf):
                buf.extend(bytes(offset - len(buf)))
            buf[offset : offset + len(data)] = data
    elif kind == "truncate":
        length = op[2]
        buf = buf[:length] + bytearray(max(0, length - len(buf)))
    elif kind == "replace":
        buf = bytearray(op[2])
    if kind == "remove":
        model.pop(cid, None)
    else:
        model[cid] = buf


def store_prepare(store: ChunkStore, op) -> int:
    kind, cid = op[0], op[1]
    version = store.meta(cid).commit_version + 1
    if kind == "write":
        args = (UpdateKind.WRITE, op[2], op[3], 0)
    elif kind == "truncate":
        args = (UpdateKind.TRUNCATE, 0, b"", op[2])
    elif kind == "replace":
        args = (UpdateKind.REPLACE, 0, op[2], 0)
    else:
        args = (UpdateKind.REMOVE, 0, b"", 0)
    info = store.prepare(cid, *args, version, 1, CS, data_crc32c=crc32c.crc32c(args[2]))
    assert info.update_version == version
    return version


def check(store: ChunkStore, model: dict[ChunkId, bytearray], versions: dict[ChunkId, int]) -> None:
    for cid in CHUNKS:
        data, meta = store.read(cid, 0, CS)
        want = model.get(cid)
        assert meta.exists == (want is not None), cid
        assert meta.commit_version == versions.get(cid, 0) and meta.pending_version is None
        if want is not None:
            assert data == want and meta.length == len(want) and meta.crc32c == crc32c.crc32c(want)
            tail = store.read(cid, 3, 7)[0]
            assert tail == want[3:10]
    assert [m.chunk_id for m in store.list_chunks()] == sorted(model)
    stats = store.stats()
    assert (stats.chunks, stats.bytes, stats.pending) == (len(model), sum(map(len, model.values())), 0)
    for inode in INODES:
        last = store.last_chunk(inode)
        mine = [c for c in sorted(model) if c.inode_id == inode]
        assert (last.chunk_id if last else None) == (mine[-1] if mine else None)


@settings(max_examples=150, deadline=None)
@given(st.lists(op_st, max_size=25))
def test_store_matches_the_model(ops) -> None:
    with tempfile.TemporaryDirectory(dir=TMP_BASE) as tmp:
        root = os.path.join(tmp, "target")
        store = ChunkStore(root)
        model: dict[ChunkId, bytearray] = {}
        versions: dict[ChunkId, int] = {}
        gone: set[int] = set()
        try:
            for op in ops:
                if op[0] == "reopen":
                    store.close()
                    store = ChunkStore(root)
                elif op[0] == "remove_inode":
                    removed = [c for c in model if c.inode_id == op[1]]
                    assert store.remove_inode(op[1]) == len(removed)
                    for cid in removed:
                        del model[cid]
                    for cid in [c for c in versions if c.inode_id == op[1]]:
                        del versions[cid]
                    gone.add(op[1])
                elif op[1].inode_id in gone:
                    with pytest.raises(NotFound):  # nothing re-creates a collected file's chunks
                        store_prepare(store, op)
                else:
                    version = store_prepare(store, op)
                    fate = op[-1]
                    if fate == "commit":
                        store.commit(op[1], version)
                        model_apply(model, op)
                        versions[op[1]] = version  # a REMOVE leaves a tombstone at its version
                    elif fate == "abort":
                        store.abort(op[1], version)
                    else:  # crash before commit: the whole pending version is kept, then dropped
                        store.close()
                        store = ChunkStore(root)
                        assert store.recovered.rolled_forward == ()
                        assert store.recovered.kept_pending == (op[1],)
                        assert store.meta(op[1]).pending_version == version
                        store.abort(op[1], version)
                check(store, model, versions)
            leftovers = [f for _, _, fs in os.walk(store.paths.root) for f in fs if ".pending" in f]
            assert leftovers == []
            chunk_files = sum(len(fs) for _, _, fs in os.walk(store.paths.root))
            assert chunk_files == len(model)  # no orphan chunk files either
        finally:
            store.close()

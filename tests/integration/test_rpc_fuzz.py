"""Hypothesis against every gRPC method of a live cluster (issue 9, "fuzzing of every
RPC request type against a live server: no crash, no data change, clear errors").

The methods are read from the generated service descriptors (Meta, Mgmt, Storage), and
each request is drawn from its message descriptor, so an RPC added later is fuzzed
without a change here. A request is either

- a message with random fields: scalars at the edges of their wire type and anything
  in between, strings empty, very long, with NUL or slashes, enums outside their
  values, nested messages and repeated fields of any length; fields whose names say
  what they hold (chain_id, target_id, path, ...) draw half the time from the values
  the cluster really has, so that some requests get deep into the operators; or
- raw bytes: random bytes, a valid serialization with junk appended or cut short, an
  unknown field, or a string field (at any depth) holding bytes that are not UTF-8.

Each is sent as raw bytes through a generic unary call with a short deadline. Every
error must carry one of the documented status codes (never INTERNAL or UNKNOWN) and a
non-empty message, and the server must still be running after each request.

KNOWN files are written in a directory no random path names before any fuzzing; after
each service's run they read back byte-exact through a Client, from every replica
(raw Read of each chunk on each target) and their stat is unchanged. Fuzzed requests
are steered away from them: an `inode_id` equal to one of theirs is moved to a scratch
inode (a valid root request naming it, e.g. Close with a longer length or a storage
Write, may legitimately change it: that is authority, not a bug).

Mgmt runs on a cluster of its own, because its requests are cluster-wide: a
RegisterNode or Heartbeat naming a live node can legitimately move its address or
report its targets offline, and SetTargetAdminState can take every replica out.
No method is left out; instead a node_id or target_id of the real nodes is steered to
an id no node has, so fuzzing exercises every validation and state rule for nodes that
do not exist, and the real chains must keep serving the KNOWN files.

Per service the number of requests run, and the status codes seen, are printed
(visible without -s). Also an error must come from the server's error mapping (its
EmberFS code in the trailing metadata): the fuzz found refusals that quoted a huge
input and so reached the client as RESOURCE_EXHAUSTED "Stream removed"; the last test
keeps those cases (fixed in common/servicing.py by cutting long messages).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import crc32c
import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emberfs.client import Client
from emberfs.client._launch import LocalCluster, ServerProcess
from emberfs.common.errors import ERROR_METADATA_KEY, error_for_code
from emberfs.common.rpc import channel_options
from emberfs.common.routing import RoutingView
from emberfs.proto import common_pb2, meta_pb2, mgmt_pb2, storage_pb2

pytestmark = pytest.mark.timeout(240)

CHUNK = 64 * 1024
DEADLINE_S = 5.0
EXAMPLES = {"Meta": 80, "Storage": 80, "Mgmt": 120}  # per method
SERVICES = {"Meta": meta_pb2, "Mgmt": mgmt_pb2, "Storage": storage_pb2}
# The statuses a server may answer with: each says what was wrong with the request or
# the cluster. INTERNAL and UNKNOWN mean an exception the server did not expect.
DOCUMENTED = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OUT_OF_RANGE,
})
RUN: Counter[tuple[str, str]] = Counter()  # requests sent, by (service, method)
OUTCOMES: Counter[tuple[str, str]] = Counter()  # by (service, status name or "OK")

KNOWN_DIR = f"/known-{uuid.uuid4().hex}"  # no random path names it
KNOWN = {  # name -> bytes: empty, short, one whole chunk, several chunks and a tail
    "empty": b"",
    "short": b"emberfs fuzz",
    "chunk": random.Random(1).randbytes(CHUNK),
    "chunks": random.Random(2).randbytes(3 * CHUNK + 777),
}
PLAYGROUND = "/fuzz"  # what fuzzed paths mostly name: a few files, a directory, a symlink
SCRATCH_INODE = 0xF022_0000_0001  # where a fuzzed inode_id naming a KNOWN inode goes
FAKE_NODE = 4242  # where a fuzzed node_id naming a real node goes (Mgmt)
FAKE_TARGET = FAKE_NODE * 100 + 1


# -- the clusters ------------------------------------------------------------------------------


@dataclass
class Live:
    """A running cluster, the KNOWN files on it, and the ids fuzzed fields draw from."""

    cluster: LocalCluster
    known: dict[str, Any]  # path -> StatResult, taken once they were written
    known_inodes: frozenset[int]
    node_ids: list[int]
    target_ids: list[int]
    chain_ids: list[int]
    chain_versions: list[int]
    scratch_inodes: list[int]
    storage_addresses: list[str]
    steer: dict[str, dict[int, int]] = field(default_factory=dict)  # field name -> {value: replacement}

    def processes(self) -> list[ServerProcess]:
        return [self.cluster.meta, *self.cluster.storage]


async def _populate(meta: str) -> tuple[dict[str, Any], list[int], RoutingView]:
    async with Client(meta, uid=0, gid=0, groups=[]) as fs:
        await fs.mkdir(KNOWN_DIR, 0o755)
        for name, data in KNOWN.items():
            await fs.write_file(f"{KNOWN_DIR}/{name}", data)
        await fs.mkdir(PLAYGROUND, 0o777)
        await fs.mkdir(f"{PLAYGROUND}/d", 0o777)
        await fs.write_file(f"{PLAYGROUND}/a", b"a" * 100)
        await fs.write_file(f"{PLAYGROUND}/d/b", b"b" * (CHUNK + 1))
        await fs.symlink("a", f"{PLAYGROUND}/s")
        known = {f"{KNOWN_DIR}/{name}": await fs.stat(f"{KNOWN_DIR}/{name}") for name in KNOWN}
        known[KNOWN_DIR] = await fs.stat(KNOWN_DIR)
        scratch = [(await fs.stat(f"{PLAYGROUND}/{p}")).st_ino for p in ("a", "d", "d/b")]
        return known, scratch, RoutingView(await fs.routing())


def _live(cluster: LocalCluster) -> Live:
    known, scratch, view = asyncio.run(asyncio.wait_for(_populate(cluster.meta_address), 60))
    chains = [view.chain(chain_id) for chain_id in view.chain_ids()]
    targets = sorted({t.target_id for chain in chains for t in chain.targets})
    return Live(
        cluster, known, frozenset(stat.st_ino for stat in known.values()),
        node_ids=sorted({view.node_of(t) for t in targets}), target_ids=targets,
        chain_ids=[c.chain_id for c in chains], chain_versions=sorted({c.chain_version for c in chains}),
        scratch_inodes=[*scratch, SCRATCH_INODE], storage_addresses=[p.address for p in cluster.storage if p.address],
    )


@pytest.fixture(scope="module")
def data_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Meta and Storage are fuzzed here: 3 nodes, chains of 3 replicas."""
    cluster = LocalCluster(tmp_path_factory.mktemp("rpcfuzz"), nodes=3, replicas=3, chunk_size=CHUNK,
                           heartbeat_timeout=15.0)
    cluster.start(timeout=60)
    try:
        live = _live(cluster)
        live.steer = {"inode_id": {i: SCRATCH_INODE for i in live.known_inodes}}
        yield live
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def mgmt_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Mgmt is fuzzed here (module docstring): 2 nodes, chains of 2 replicas."""
    cluster = LocalCluster(tmp_path_factory.mktemp("mgmtfuzz"), nodes=2, replicas=2, chunk_size=CHUNK,
                           heartbeat_timeout=15.0)
    cluster.start(timeout=60)
    try:
        live = _live(cluster)
        live.steer = {
            "inode_id": {i: SCRATCH_INODE for i in live.known_inodes},
            "node_id": {n: FAKE_NODE for n in live.node_ids},
            "target_id": {t: FAKE_TARGET for t in live.target_ids},
        }
        yield live
    finally:
        cluster.stop()


# -- checks ------------------------------------------------------------------------------------


def _assert_names_its_error(exc: grpc.RpcError, what: str) -> None:
    """The server's own answer: its EmberFS error code in the trailing metadata, matching the status."""
    codes = [value for key, value in exc.trailing_metadata() or () if key == ERROR_METADATA_KEY]
    assert codes, f"{what}: {exc.code().name} {exc.details()[:300]!r} does not come from the server's error mapping"
    assert error_for_code(codes[0]).grpc_status == exc.code(), (what, codes[0], exc.code())


def _assert_running(live: Live) -> None:
    for proc in live.processes():
        assert proc.running, f"{proc!r} exited with {proc.returncode}:\n{proc.log_tail()}"


def _assert_known_intact(live: Live, read_replicas: Any) -> None:
    """KNOWN reads back byte-exact through a Client and from every replica (the
    `read_replicas` fixture); stats unchanged."""
    _assert_running(live)

    async def check() -> None:
        async with Client(live.cluster.meta_address, uid=0, gid=0, groups=[]) as fs:
            assert sorted(await fs.listdir(KNOWN_DIR)) == sorted(KNOWN)
            for path, before in live.known.items():
                assert await fs.stat(path) == before, path
            for name, data in KNOWN.items():
                assert await fs.read_file(f"{KNOWN_DIR}/{name}") == data, name
        for name, data in KNOWN.items():
            stat = live.known[f"{KNOWN_DIR}/{name}"]
            held: dict[int, bytearray] = {}
            for index, copies in sorted((await read_replicas(live.cluster.meta_address, stat)).items()):
                for target_id, reply in copies.items():
                    assert reply.exists, f"{name}: chunk {index} missing on target {target_id}"
                    held.setdefault(target_id, bytearray()).extend(reply.data)
            for target_id, got in held.items():
                assert got == data, f"{name} differs on target {target_id}"

    asyncio.run(asyncio.wait_for(check(), 60))


# -- strategies --------------------------------------------------------------------------------

U32 = st.one_of(st.sampled_from([0, 1, 2, 3, 0o644, 0o7777, 0o10000, 2**31 - 1, 2**31, 2**32 - 1]),
                st.integers(0, 2**32 - 1))
U64 = st.one_of(st.sampled_from([0, 1, 2, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]),
                st.integers(0, 2**64 - 1))
I32 = st.one_of(st.sampled_from([-(2**31), -1, 0, 2**31 - 1]), st.integers(-(2**31), 2**31 - 1))
I64 = st.one_of(st.sampled_from([-(2**63), -1, 0, 1, 2**63 - 1]), st.integers(-(2**63), 2**63 - 1))
STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "\x00", "/", "..", "x" * 255, "x" * 256, "ü" * 300, "a/" * 3000, "y" * 70_000]),
)
BLOBS = st.one_of(st.binary(max_size=200), st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 2**20 + 3]).map(bytes))
PLAIN_NAMES = st.sampled_from(["a", "b", "d", "s", "new", "n2"])  # what the playground holds, and two it does not
NAMES = st.one_of(
    PLAIN_NAMES, PLAIN_NAMES, PLAIN_NAMES,
    st.sampled_from([".", "..", "", "x" * 255, "x" * 256, "n\x00ul", "\u00e9", "a\nb"]), st.text(max_size=12),
)
_IN_PLAYGROUND = st.lists(PLAIN_NAMES, min_size=1, max_size=3).map(lambda names: "/".join([PLAYGROUND, *names]))
PATHS = st.one_of(
    _IN_PLAYGROUND, _IN_PLAYGROUND, _IN_PLAYGROUND,
    st.lists(NAMES, max_size=4).map(lambda names: "/".join([PLAYGROUND, *names])),
    st.lists(NAMES, max_size=4).map(lambda names: "/" + "/".join(names)),
    st.lists(NAMES, max_size=3).map("/".join),  # relative
    st.sampled_from(["/", "", "//", "/fuzz/", "/fuzz//a", "/" + "a/" * 3000, "/" + "s/" * 50]),
    st.text(max_size=30),
)


def _hints(live: Live) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible values by field name (the whole value of a repeated field), drawn most
    of the time (`messages`), so that requests reach the operators and not only the
    first check; a few are still wrong in ways the operators must refuse."""
    return {
        "path": PATHS, "src": PATHS, "dst": PATHS, "target": PATHS, "start_after": NAMES,
        "chain_id": st.sampled_from(live.chain_ids),
        "chain_ids": st.lists(st.sampled_from(live.chain_ids), max_size=3),
        "chain_version": st.sampled_from(live.chain_versions),
        "target_id": st.sampled_from(live.target_ids),
        "from_target": st.sampled_from(live.target_ids),
        "to_target": st.sampled_from(live.target_ids),
        "node_id": st.sampled_from(live.node_ids),
        "inode_id": st.sampled_from(live.scratch_inodes),
        "chunk_index": st.integers(0, 3),
        "chunk_size": st.sampled_from([CHUNK, 2 * CHUNK, 2**26, 2**27, CHUNK - 1, 1]),
        "offset": st.integers(0, CHUNK),
        "length": st.sampled_from([0, 1, CHUNK, CHUNK + 1, 2**40, 2**63]),
        "mode": st.sampled_from([0, 0o644, 0o755, 0o777, 0o1777, 0o7777, 0o10000, 0o100644]),
        "uid": st.sampled_from([0, 1000, 65534]), "gid": st.sampled_from([0, 1000]),
        "groups": st.sampled_from([[], [0], [1000, 0], list(range(70_000))]),
        "client_id": st.sampled_from(["rpc-fuzz", "rpc-fuzz-2"]),
        "address": st.sampled_from(["127.0.0.1:1", "localhost:65535", "h:0", "h:65536", ":1", "[::1]:5", "nope"]),
        "bulk_address": st.sampled_from(["", "127.0.0.1:2", "h:x"]),
        "replicas": st.sampled_from([1, 2, 3, 16, 17]),
        "chains": st.sampled_from([0, 1, 2, 100_000, 100_001, 2**32 - 1]),
        "stripe": st.sampled_from([0, 1, 2, 3, 64, 65, 2**32 - 1]),
        "limit": st.sampled_from([0, 1, 2, 1000, 100_000, 2**32 - 1]),
    }


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return BLOBS
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in fd.enum_type.values]), I32)
    return {
        FieldDescriptor.CPPTYPE_STRING: STRINGS,
        FieldDescriptor.CPPTYPE_BOOL: st.booleans(),
        FieldDescriptor.CPPTYPE_UINT32: U32,
        FieldDescriptor.CPPTYPE_UINT64: U64,
        FieldDescriptor.CPPTYPE_INT32: I32,
        FieldDescriptor.CPPTYPE_INT64: I64,
        FieldDescriptor.CPPTYPE_DOUBLE: st.floats(),
        FieldDescriptor.CPPTYPE_FLOAT: st.floats(width=32),
    }[fd.cpp_type]


_RANGES = {
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32), FieldDescriptor.CPPTYPE_UINT64: (0, 2**64),
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**32), FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**64),
}


def _fit(fd: FieldDescriptor, value: Any) -> Any:
    """A hinted integer wrapped into the field's wire type (one hint serves uint32 and uint64 fields)."""
    if fd.cpp_type not in _RANGES:
        return value
    low, span = _RANGES[fd.cpp_type]
    wrap = lambda n: (n - low) % span + low  # noqa: E731
    return [wrap(n) for n in value] if fd.is_repeated else wrap(value)


def messages(
    descriptor: Descriptor, hints: dict[str, st.SearchStrategy[Any]], depth: int = 0
) -> st.SearchStrategy[Message]:
    """Random instances of `descriptor`'s message: each field left unset one time in ten,
    wild two in ten, and otherwise drawn from its hint (when it has one, else wild);
    nested messages to depth 3."""
    message_type = message_factory.GetMessageClass(descriptor)

    def value(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
        if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            return messages(fd.message_type, hints, depth + 1)
        return _scalar(fd)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = message_type()
        for fd in descriptor.fields:
            hint = hints.get(fd.name)
            choice = draw(st.integers(0, 9))  # 0: unset; 1, 2: wild; else from the hint if there is one
            if choice == 0 or fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and depth >= 3:
                continue
            repeated = fd.is_repeated
            if hint is not None and choice > 2:
                got = _fit(fd, draw(hint))
            elif repeated:
                got = draw(st.lists(value(fd), max_size=draw(st.sampled_from([2, 5, 40]))))
            else:
                got = draw(value(fd))
            if repeated:
                getattr(message, fd.name).extend(got)
            elif fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                getattr(message, fd.name).CopyFrom(got)
            else:
                setattr(message, fd.name, got)
        if "crc32c" in descriptor.fields_by_name and "data" in descriptor.fields_by_name and draw(st.integers(0, 3)):
            message.crc32c = crc32c.crc32c(message.data)  # type: ignore[attr-defined]  # else few get past the CRC
        return message

    return build()


def _steer(message: Message, steer: dict[str, dict[int, int]]) -> None:
    """Move every field that names a KNOWN inode or a real node/target (module docstring)
    to its replacement, at any depth."""
    for fd, value in message.ListFields():
        if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            for item in value if fd.is_repeated else [value]:
                _steer(item, steer)
        elif fd.name in steer and not fd.is_repeated and value in steer[fd.name]:
            setattr(message, fd.name, steer[fd.name][value])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string_paths(descriptor: Descriptor, depth: int = 0) -> list[list[int]]:
    """Field-number paths from `descriptor` to each string field, nested to depth 3."""
    paths: list[list[int]] = []
    for fd in descriptor.fields:
        if fd.type == FieldDescriptor.TYPE_STRING:
            paths.append([fd.number])
        elif fd.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            paths.extend([fd.number, *rest] for rest in _string_paths(fd.message_type, depth + 1))
    return paths


class Request(NamedTuple):
    how: str
    payload: bytes

    def __repr__(self) -> str:  # a 1 MiB payload in a failure report helps nobody
        return f"Request({self.how}, {len(self.payload)} bytes: {self.payload[:300]!r})"


def requests(descriptor: Descriptor, live: Live) -> st.SearchStrategy[Request]:
    """A steered random message (most of the time) or raw bytes that may not parse."""
    hinted = messages(descriptor, _hints(live))
    string_paths = _string_paths(descriptor)
    free_numbers = st.integers(1, 2**29 - 1).filter(lambda n: n not in descriptor.fields_by_number)

    def steered(message: Message) -> Message:
        _steer(message, live.steer)
        return message

    @st.composite
    def build(draw: st.DrawFn) -> Request:
        how = draw(st.sampled_from(["message"] * 10 + ["random", "junk-after", "cut", "unknown-field", "not-utf8"]))
        if how == "random":
            return Request(how, draw(st.binary(max_size=300)))
        base = steered(draw(hinted)).SerializeToString()
        if how == "junk-after":
            base += draw(st.binary(min_size=1, max_size=40))
        elif how == "cut" and base:
            base = base[:draw(st.integers(0, len(base) - 1))]
        elif how == "unknown-field":
            base += _field(draw(free_numbers), draw(st.binary(max_size=20)))
        elif how == "not-utf8" and string_paths:
            # Appended fields merge into the message (a later scalar wins), so this
            # overwrites one string, at any depth, with bytes that do not decode.
            path = draw(st.sampled_from(string_paths))
            bad = draw(st.binary(max_size=20)) + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88"]))
            for number in reversed(path):
                bad = _field(number, bad)
            base += bad
        return Request(how, base)

    return build()


# -- the fuzz runs -----------------------------------------------------------------------------


def _addresses(live: Live, service: str) -> st.SearchStrategy[str]:
    """Where a request of `service` goes: any storage server, or the metaserver."""
    if service == "Storage":
        return st.sampled_from(live.storage_addresses)
    return st.just(live.cluster.meta_address)


def _fuzz_service(live: Live, service: str, read_replicas: Any, capsys: pytest.CaptureFixture[str]) -> None:
    methods: list[MethodDescriptor] = list(SERVICES[service].DESCRIPTOR.services_by_name[service].methods)
    channels = {address: grpc.insecure_channel(address, options=channel_options())
                for address in [live.cluster.meta_address, *live.storage_addresses]}
    try:
        for method in methods:
            _fuzz_method(live, service, method, channels)
    finally:
        for channel in channels.values():
            channel.close()
    ran = {m.name: RUN[service, m.name] for m in methods}
    seen = {code: n for (s, code), n in sorted(OUTCOMES.items()) if s == service}
    with capsys.disabled():
        print(f"\n{service}: {sum(ran.values())} fuzzed requests over {len(methods)} methods {ran}; answers {seen}")
    for name, n in ran.items():
        assert n >= EXAMPLES[service] // 2, f"only {n} requests to {service}.{name} ran"
    _assert_known_intact(live, read_replicas)


def _fuzz_method(live: Live, service: str, method: MethodDescriptor, channels: dict[str, grpc.Channel]) -> None:
    route = f"/{method.containing_service.full_name}/{method.name}"

    @settings(max_examples=EXAMPLES[service], deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(requests(method.input_type, live), _addresses(live, service))
    def one(request: Request, address: str) -> None:
        RUN[service, method.name] += 1
        call = channels[address].unary_unary(route, request_serializer=None, response_deserializer=None)
        try:
            call(request.payload, timeout=DEADLINE_S)
            OUTCOMES[service, "OK"] += 1
        except grpc.RpcError as exc:
            code = exc.code()
            OUTCOMES[service, code.name] += 1
            assert code in DOCUMENTED, f"{service}.{method.name} at {address}: {code.name} {exc.details()!r}"
            assert exc.details(), f"{service}.{method.name}: {code.name} with no message"
            if code != grpc.StatusCode.DEADLINE_EXCEEDED:  # the one status the client makes up
                _assert_names_its_error(exc, f"{service}.{method.name}")
        _assert_running(live)

    one()


def test_fuzzed_meta_requests_keep_the_server_up_and_known_files_intact(
        data_cluster: Live, read_replicas: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_service(data_cluster, "Meta", read_replicas, capsys)


def test_fuzzed_storage_requests_keep_the_servers_up_and_known_files_intact(
        data_cluster: Live, read_replicas: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_service(data_cluster, "Storage", read_replicas, capsys)


def test_fuzzed_mgmt_requests_keep_the_cluster_serving_known_files(
        mgmt_cluster: Live, read_replicas: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_service(mgmt_cluster, "Mgmt", read_replicas, capsys)



@pytest.mark.parametrize("service, method, request_message", [
    ("Meta", "Mkdir", meta_pb2.MkdirRequest(path="y" * 70_000, mode=0o755)),
    ("Meta", "List", meta_pb2.ListRequest(path="/", start_after="\U0001f600" * 5000 + "/")),
    ("Mgmt", "RegisterNode", mgmt_pb2.RegisterNodeRequest(node_id=FAKE_NODE, address="\u00fc" * 30_000)),
], ids=["relative path", "cursor of 4-byte characters", "address"])
def test_an_error_quoting_a_long_bad_input_arrives_as_itself(
        data_cluster: Live, service: str, method: str, request_message: Message) -> None:
    """Found by the fuzz: a refusal that quoted a 70 KB input made a grpc-message header
    the client would not take, so it saw RESOURCE_EXHAUSTED "Stream removed" instead of
    INVALID_ARGUMENT and the reason."""
    request_message.header.CopyFrom(common_pb2.RequestHeader(client_id="rpc-fuzz", uid=0, gid=0))
    with grpc.insecure_channel(data_cluster.cluster.meta_address, options=channel_options()) as channel:
        call = channel.unary_unary(f"/emberfs.{service}/{method}", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(request_message.SerializeToString(), timeout=DEADLINE_S)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    _assert_names_its_error(info.value, method)
    assert 0 < len(info.value.details().encode()) <= 2048, info.value.details()

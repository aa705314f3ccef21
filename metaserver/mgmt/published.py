"""The routing table as GetRouting sends it: the durable records, kept serialized one by one.

At thousands of targets the whole table is hundreds of KB. Building it as one
RoutingInfo message and serializing it for each caller that needs it (a new client, a
server far behind) cost the manager milliseconds per call, which at a thousand nodes
is more than it has. Here every node, target and chain record is kept as its wire
bytes, made when a decision touches it (`snapshot`, at decision time) and put in place
when that decision is durable (`apply`, commits.py), so the table never shows what a
crash could take back. The whole answer is the records joined in id order, made at
most once per version (and heartbeat-time refresh) and handed to every caller as the
same bytes; a delta joins only the records routinglog.py names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from emberfs.common.chainstate import chain_to_proto
from emberfs.proto import mgmt_pb2

from .routinglog import Touched
from .state import ClusterState
from .wire import node_info, target_info

__all__ = ["PublishedRouting", "Records", "varint"]

# Field tags (field number << 3 | wire type 2).
_INFO_TAGS = (b"\x12", b"\x1a", b"\x22")  # RoutingInfo.nodes / targets / chains
_DELTA_TAGS = (b"\x1a", b"\x22", b"\x2a")  # RoutingDelta.nodes / targets / chains
_VERSION_TAG = b"\x08"  # RoutingInfo.routing_version, a varint
_ROUTING, _DELTA = b"\x12", b"\x1a"  # GetRoutingResponse.routing / .delta


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


@dataclass(frozen=True)
class Records:
    """Serialized records as one decision left them; None: the record is gone."""

    nodes: Mapping[int, bytes | None]
    targets: Mapping[int, bytes | None]
    chains: Mapping[int, bytes | None]


def snapshot(state: ClusterState, nodes: Iterable[int], targets: Iterable[int], chains: Iterable[int],
             last_heartbeat_ms: Mapping[int, int]) -> Records:
    """These records as `state` has them now."""
    return Records(
        {n: node_info(state, n, last_heartbeat_ms).SerializeToString() if n in state.nodes else None for n in nodes},
        {t: target_info(state, t).SerializeToString() if t in state.targets else None for t in targets},
        {c: chain_to_proto(state.chains[c]).SerializeToString() if c in state.chains else None for c in chains},
    )


class PublishedRouting:
    def __init__(self, state: ClusterState, last_heartbeat_ms: Mapping[int, int]) -> None:
        """The table of `state` (durable: nothing pending when a manager loads it)."""
        records = snapshot(state, state.nodes, state.targets, state.chains, last_heartbeat_ms)
        self.version = state.routing_version
        self._records: tuple[dict[int, bytes], dict[int, bytes], dict[int, bytes]] = (
            {k: v for k, v in records.nodes.items() if v is not None},
            {k: v for k, v in records.targets.items() if v is not None},
            {k: v for k, v in records.chains.items() if v is not None},
        )
        self._response: tuple[int, bytes] | None = None  # (version, GetRoutingResponse bytes)
        self.serial = 0  # moves whenever a record or the version does (a cache of answers keys on it)

    def apply(self, records: Records, version: int) -> None:
        """Put a durable decision's records in place; the table is now of `version`."""
        for mine, changed in zip(self._records, (records.nodes, records.targets, records.chains), strict=True):
            for key, payload in changed.items():
                if payload is None:
                    mine.pop(key, None)
                else:
                    mine[key] = payload
        if records.nodes or records.targets or records.chains or version != self.version:
            self._response = None
            self.serial += 1
        self.version = max(self.version, version)

    def refresh_heartbeats(self, last_heartbeat_ms: Mapping[int, int]) -> None:
        """New heartbeat times in the node records (they move without a version)."""
        nodes = self._records[0]
        for node_id, payload in nodes.items():
            info = mgmt_pb2.NodeInfo.FromString(payload)
            info.last_heartbeat_ms = last_heartbeat_ms.get(node_id, info.last_heartbeat_ms)
            nodes[node_id] = info.SerializeToString()
        self._response = None

    def response(self) -> bytes:
        """GetRoutingResponse{routing: the whole table}, serialized."""
        if self._response is None or self._response[0] != self.version:
            parts = [_VERSION_TAG + varint(self.version)] if self.version else []
            for tag, records in zip(_INFO_TAGS, self._records, strict=True):
                parts.extend(_field(tag, records[key]) for key in sorted(records))
            self._response = (self.version, _field(_ROUTING, b"".join(parts)))
        return self._response[1]

    def delta(self, from_version: int, touched: Touched) -> bytes:
        """GetRoutingResponse{delta: the touched records from `from_version`}, serialized
        (a message's bytes followed by more fields of it parse as one message)."""
        wanted = (touched.nodes, touched.targets, touched.chains)
        head = mgmt_pb2.RoutingDelta(
            from_version=from_version, routing_version=self.version,
            removed_nodes=sorted(n for n in touched.nodes if n not in self._records[0]),
            removed_targets=sorted(t for t in touched.targets if t not in self._records[1]),
            removed_chains=sorted(c for c in touched.chains if c not in self._records[2]),
        ).SerializeToString()
        parts = [head]
        for tag, records, ids in zip(_DELTA_TAGS, self._records, wanted, strict=True):
            parts.extend(_field(tag, records[key]) for key in sorted(ids) if key in records)
        return _field(_DELTA, b"".join(parts))

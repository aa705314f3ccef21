"""gRPC options every EmberFS server and channel shares.

Chunk payloads travel in gRPC messages (up to a 64 MiB chunk plus framing), so the
4 MiB default message cap is raised on both ends; a second server on a taken port
must fail to bind rather than share it (SO_REUSEPORT off).
"""

from __future__ import annotations

__all__ = ["KEEPALIVE_MS", "MAX_MESSAGE_BYTES", "channel_options", "keepalive_options", "server_options"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024 + 64 * 1024
MAX_STREAMS_PER_CONNECTION = 256
KEEPALIVE_MS = 1000  # a channel with calls in flight pings this often; no answer within 2x: peer gone


def server_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        # Per-connection cap on calls in flight: one peer cannot hold unbounded server
        # work; callers past it wait for a stream (HTTP/2), they are not refused.
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        # Accept the keep-alive pings of keepalive_options() (grpc would otherwise answer
        # pings more frequent than every 5 minutes with GOAWAY "too_many_pings").
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def channel_options() -> list[tuple[str, int]]:
    # grpc's default reconnect backoff grows to two minutes; callers must notice a
    # restarted server within their retry budget, so keep it short.
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def keepalive_options() -> list[tuple[str, int]]:
    """For channels to a metaserver when another can answer instead: a frozen or cut-off
    peer fails the calls in flight (UNAVAILABLE) within about 3 s, instead of each one
    waiting out its deadline, so the caller moves on to the next address."""
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 2 * KEEPALIVE_MS),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.ping_timeout_ms", 2 * KEEPALIVE_MS),
    ]

"""gRPC options every EmberFS server and channel shares.

Chunk payloads travel in gRPC messages (up to a 64 MiB chunk plus framing), so the
4 MiB default message cap is raised on both ends; a second server on a taken port
must fail to bind rather than share it (SO_REUSEPORT off).
"""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_BYTES", "channel_options", "server_options"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024 + 64 * 1024
MAX_STREAMS_PER_CONNECTION = 256


def server_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        # Per-connection cap on calls in flight: one peer cannot hold unbounded server
        # work; callers past it wait for a stream (HTTP/2), they are not refused.
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
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

"""The gRPC service edge every EmberFS server shares.

`add_servicer` registers a service as the generated `add_XServicer_to_server` does,
except that a request which fails to parse reaches the handler as `Undecodable` and is
answered INVALID_ARGUMENT instead of failing inside grpc with UNKNOWN. `rpc_handler`
makes the decorator that is each server's one error mapping: an EmberError becomes its
gRPC status with its exact code in the `emberfs-error` trailing metadata (its message
cut to MAX_ERROR_MESSAGE_BYTES, so that one quoting a huge bad input still reaches the
client); anything else is a bug, logged with its traceback and answered INTERNAL, and
the server keeps serving.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from emberfs.common import errors
from emberfs.common.errors import EmberError, Internal, InvalidArgument

__all__ = ["MAX_ERROR_MESSAGE_BYTES", "Undecodable", "add_servicer", "reject_unknown_fields", "rpc_handler"]

# An error message travels as the grpc-message trailer, percent-encoded (up to 3x);
# clients refuse trailers past 8-16 KiB and would report RESOURCE_EXHAUSTED "Stream
# removed" instead of the error, so a message quoting a long bad input is cut.
MAX_ERROR_MESSAGE_BYTES = 1024

Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


class Undecodable:
    """Stands in for a request whose bytes did not parse (e.g. a string that is not UTF-8)."""

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(message_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def decode(raw: bytes) -> Message | Undecodable:
        try:
            return message_type.FromString(raw)
        except DecodeError as exc:
            return Undecodable(str(exc))

    return decode


def reject_unknown_fields(message: Message) -> None:
    """Refuse a message carrying fields this server does not know, at any depth.

    A newer client's field would otherwise be dropped silently, and the request
    would run with a meaning its sender did not intend.
    """
    found: list[str] = []
    stack: list[tuple[str, Message]] = [("", message)]
    while stack:
        prefix, current = stack.pop()
        found.extend(f"{prefix}{field.field_number}" for field in UnknownFieldSet(current))
        for descriptor, value in current.ListFields():
            if descriptor.type != descriptor.TYPE_MESSAGE:
                continue
            if descriptor.is_repeated:
                stack.extend((f"{prefix}{descriptor.name}[{i}].", item) for i, item in enumerate(value))
            else:
                stack.append((f"{prefix}{descriptor.name}.", value))
    if found:
        raise InvalidArgument(f"request has unknown field numbers: {', '.join(sorted(found))}")


def _clipped(message: str) -> str:
    raw = message.encode("utf-8", "replace")
    if len(raw) <= MAX_ERROR_MESSAGE_BYTES:
        return message
    return f"{raw[:MAX_ERROR_MESSAGE_BYTES].decode('utf-8', 'ignore')}... ({len(raw)} bytes in all)"


def rpc_handler(
    log: logging.Logger,
    *,
    allow_unknown_fields: bool = False,
    internal_message: str = "internal error (see server log)",
) -> Callable[[Handler], Handler]:
    """The error-mapping decorator for one server's handlers; unless `allow_unknown_fields`,
    refuses requests with fields this server does not know."""

    def decorate(method: Handler) -> Handler:
        @functools.wraps(method)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if isinstance(request, Undecodable):
                    raise InvalidArgument(f"request does not parse: {request.error}")
                if not allow_unknown_fields:
                    reject_unknown_fields(request)
                return await method(self, request, context)
            except EmberError as exc:
                error: EmberError = exc
            except Exception:
                log.exception("%s failed", method.__name__)
                error = Internal(internal_message)
            await context.abort(
                error.grpc_status, _clipped(error.message), trailing_metadata=((errors.ERROR_METADATA_KEY, error.code),)
            )

        return handler

    return decorate


def _serializer(message_type: type[Message]) -> Callable[[Message | bytes], bytes]:
    """A handler may answer with a message or with the bytes of one it serialized
    before (a large answer that many callers share: metaserver/mgmt/published.py)."""
    serialize = message_type.SerializeToString

    def encode(reply: Message | bytes) -> bytes:
        return reply if isinstance(reply, bytes) else serialize(reply)

    return encode


def add_servicer(
    pb2: ModuleType, service_name: str, servicer: object, server: grpc.aio.Server,
    *, methods: Collection[str] | None = None,
) -> None:
    """Register `servicer`'s methods of `service_name` (all, or only `methods`; the
    rest are left to grpc's UNIMPLEMENTED) with lenient request decoding."""
    service = pb2.DESCRIPTOR.services_by_name[service_name]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(getattr(pb2, method.input_type.name)),
            response_serializer=_serializer(getattr(pb2, method.output_type.name)),
        )
        for method in service.methods
        if methods is None or method.name in methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)

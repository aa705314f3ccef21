"""Tokens on gRPC: the server interceptor that checks them and the client channel that
sends them (auth.py holds the tokens file and the policy; this is only the edge).

The token travels in the call metadata as `authorization: Bearer <token>`. With a
TokenTable, `TokenInterceptor` answers every call of an EmberFS service:

- no token, or one not in the table: UNAUTHENTICATED ("missing or invalid token");
- a valid token whose role may not call the method (auth.POLICY): PERMISSION_DENIED;
- otherwise the call runs with `current_principal()` returning the token's principal
  (the Meta service takes the caller's identity from it).

Refusals carry the `emberfs-error` trailing metadata like every other EmberFS error,
so a client turns them into Unauthenticated / PermissionDenied. The request of a
refused call is never decoded. grpc health is open (auth.OPEN_SERVICES). Without a
TokenTable no interceptor is installed at all: servers behave exactly as before.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from emberfs.common.auth import OPEN_SERVICES, Principal, TokenTable, allowed_roles
from emberfs.common.errors import ERROR_METADATA_KEY, EmberError, PermissionDenied, Unauthenticated
from emberfs.common.rpc import channel_options, keepalive_options
from emberfs.common.tls import aio_channel

__all__ = [
    "AUTH_METADATA_KEY",
    "TokenInterceptor",
    "bearer_metadata",
    "current_principal",
    "open_channel",
    "server_interceptors",
]

AUTH_METADATA_KEY = "authorization"
_SCHEME = "bearer "

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("emberfs_principal", default=None)


def current_principal() -> Principal | None:
    """The authenticated caller of the call being served; None when tokens are off."""
    return _PRINCIPAL.get()


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTH_METADATA_KEY, f"Bearer {token}"),)


def _bearer(metadata: Sequence[Any] | None) -> str | None:
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if text[:len(_SCHEME)].lower() == _SCHEME:
                return text[len(_SCHEME):].strip()
            return None
    return None


def _refusal(handler: grpc.RpcMethodHandler, error: EmberError) -> grpc.RpcMethodHandler:
    """A handler of the same shape that refuses without decoding the request."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(error.grpc_status, error.message, trailing_metadata=((ERROR_METADATA_KEY, error.code),))

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, response_serializer=handler.response_serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=handler.response_serializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, response_serializer=handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(refuse, response_serializer=handler.response_serializer)


def _as(principal: Principal, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler, run with `current_principal()` set (EmberFS services are unary)."""
    inner: Callable[[Any, Any], Awaitable[Any]] | None = handler.unary_unary
    if inner is None:
        return _refusal(handler, PermissionDenied("streaming calls are not served with tokens"))

    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        reset = _PRINCIPAL.set(principal)
        try:
            return await inner(request, context)
        finally:
            _PRINCIPAL.reset(reset)

    return handler._replace(unary_unary=behaviour)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Authenticate every call by its bearer token, authorise it by auth.POLICY."""

    def __init__(self, tokens: TokenTable) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None  # grpc answers UNIMPLEMENTED
        service, _, method = details.method.lstrip("/").rpartition("/")
        if service in OPEN_SERVICES:
            return handler
        roles = allowed_roles(service, method)
        principal = self._tokens.authenticate(_bearer(details.invocation_metadata))
        if principal is None:
            return _refusal(handler, Unauthenticated(
                f"{service}.{method}: missing or invalid token (send `authorization: Bearer <token>`; "
                "clients: token=, EMBERFS_TOKEN or --token-file)"))
        if principal.role not in roles:
            wanted = " or ".join(sorted(r.value for r in roles))
            return _refusal(handler, PermissionDenied(
                f"{service}.{method} needs a {wanted} token; token {principal.name!r} is a {principal.role.value} "
                "token"))
        return _as(principal, handler)


def server_interceptors(tokens: TokenTable | None) -> list[grpc.aio.ServerInterceptor]:
    """What to pass to grpc.aio.server(interceptors=...): nothing when tokens are off."""
    return [TokenInterceptor(tokens)] if tokens is not None else []


class _BearerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        details = details._replace(metadata=(*(details.metadata or ()), *self._metadata))
        return await continuation(details, request)


def open_channel(address: str, token: str | None = None, tls_ca: str | None = None, *,
                 keepalive: bool = False) -> grpc.aio.Channel:
    """An aio channel to an EmberFS server; with a token, every unary call carries it.
    (No interceptor without one: the data path on gRPC pays nothing when tokens are off.)
    With `tls_ca` (a CA's PEM path, common/tls.py) the channel is TLS and verifies the server.
    `keepalive`: a frozen or cut-off server fails the calls in flight within seconds
    (common/rpc.py), for callers that have another server to turn to."""
    interceptors = [_BearerInterceptor(token)] if token else None
    options = channel_options() + (keepalive_options() if keepalive else [])
    return aio_channel(address, tls_ca, options, interceptors)

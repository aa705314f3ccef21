"""The Meta gRPC service: decode, validate, call the operation, map errors.

Nothing here decides namespace semantics; each handler checks the request's shape
(paths through common.paths, modes, layout bounds, no unknown fields), builds the
caller identity (from the token when tokens are on, else the header) and hands a closure to the store: writes through
`store.write` (group-committed on the writer thread), reads through `store.aread`
(inline on LMDB, on a thread on etcd). Create, Mkdir, Remove, Rename, Link, Symlink and Truncate go through
`idem.once` so a retry with the same (client_id, request_id) gets the first reply back
(a retried Truncate bumps the truncate version once and returns the first `old_length`).

Errors are mapped in one place, the `_rpc` decorator (common/servicing.py): an
EmberError becomes its gRPC status with the exact code in the `emberfs-error`
trailing metadata; anything else is a bug, logged and reported as INTERNAL. Unknown
fields are refused. Bad input never takes the server down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from emberfs.common.auth import Role
from emberfs.common.authgrpc import current_principal
from emberfs.common.errors import InvalidArgument, PermissionDenied
from emberfs.common.paths import check_mode, check_name, split_path
from emberfs.common.servicing import add_servicer, reject_unknown_fields, rpc_handler
from emberfs.proto import common_pb2, meta_pb2, meta_pb2_grpc

from . import idem
from .config import check_chunk_size, check_stripe
from .capabilities import CapabilityIssuer
from .ops import access, create, link, listdir, mkdir, remove, rename, session, stat, statfs, symlink, truncate
from .ops.perm import Caller
from .ops.setattr import set_attr
from .store import MetaStore
from .txn import MetaTxn

__all__ = ["MetaServicer", "add_meta_servicer", "reject_unknown_fields"]

log = logging.getLogger("emberfs.metaserver.service")

_Resp = TypeVar("_Resp", bound=Message)

MAX_GROUPS = 65536  # NGROUPS_MAX on Linux


def add_meta_servicer(servicer: MetaServicer, server: grpc.aio.Server) -> None:
    """Register the Meta service with lenient decoding (common/servicing.py)."""
    add_servicer(meta_pb2, "Meta", servicer, server)


_rpc = rpc_handler(log)


def _caller(header: common_pb2.RequestHeader) -> Caller:
    """Who the permission checks see. With tokens, a user token's identity, whatever
    the header claims; an admin token acts as the header's identity (common/auth.py).
    Without tokens, the header's identity."""
    if len(header.client_id.encode("utf-8")) > idem.MAX_CLIENT_ID_BYTES:
        raise InvalidArgument(f"client_id is longer than {idem.MAX_CLIENT_ID_BYTES} bytes")
    if len(header.groups) > MAX_GROUPS:
        raise InvalidArgument(f"more than {MAX_GROUPS} supplementary groups")
    principal = current_principal()
    if principal is not None and principal.role is Role.USER:
        return Caller(principal.uid, principal.gid, frozenset(principal.groups))
    if principal is not None and principal.role is not Role.ADMIN:  # auth.POLICY keeps servers out already
        raise PermissionDenied(f"a {principal.role.value} token has no namespace identity")
    return Caller(header.uid, header.gid, frozenset(header.groups))


def _layout_args(chunk_size: int, stripe: int) -> None:
    """0 means inherit; anything else must be a valid layout value."""
    if chunk_size:
        check_chunk_size(chunk_size)
    if stripe:
        check_stripe(stripe)


def _inode_id(inode_id: int) -> int:
    if inode_id == 0:
        raise InvalidArgument("inode_id is required")
    return inode_id


class MetaServicer(meta_pb2_grpc.MetaServicer):
    """The namespace service over one MetaStore. Replies that open a file for chunk
    I/O (Open, Create for write, Truncate, GetCapability) carry a capability from
    `issuer`, signed after the operation's permission check passed."""

    def __init__(self, store: MetaStore, issuer: CapabilityIssuer | None = None) -> None:
        self._store = store
        self._issuer = issuer or CapabilityIssuer(None)

    async def _once(
        self,
        header: common_pb2.RequestHeader,
        method: str,
        reply_type: type[_Resp],
        op: Callable[[MetaTxn], _Resp],
    ) -> _Resp:
        """A non-idempotent write, made safe to retry by its (client_id, request_id)."""
        client_id, request_id = header.client_id, header.request_id
        return await self._store.write(
            lambda tx: idem.once(tx, client_id, request_id, method, reply_type, lambda: op(tx))
        )

    # -- reads ----------------------------------------------------------------
    @_rpc
    async def Stat(self, request: meta_pb2.StatRequest, context: grpc.aio.ServicerContext) -> meta_pb2.StatResponse:
        caller, parts = _caller(request.header), split_path(request.path)
        follow = request.follow_symlinks
        return await self._store.aread(lambda tx: stat.stat(tx, caller, parts, follow_symlinks=follow))

    @_rpc
    async def List(self, request: meta_pb2.ListRequest, context: grpc.aio.ServicerContext) -> meta_pb2.ListResponse:
        caller, parts = _caller(request.header), split_path(request.path)
        if request.start_after:
            check_name(request.start_after)
        r = request
        return await self._store.aread(
            lambda tx: listdir.listdir(
                tx, caller, parts, start_after=r.start_after, limit=r.limit, with_attrs=r.with_attrs
            )
        )

    @_rpc
    async def Readlink(
        self, request: meta_pb2.ReadlinkRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ReadlinkResponse:
        caller, parts = _caller(request.header), split_path(request.path)
        return await self._store.aread(lambda tx: symlink.readlink(tx, caller, parts))

    @_rpc
    async def StatFs(
        self, request: meta_pb2.StatFsRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.StatFsResponse:
        caller = _caller(request.header)
        return await self._store.aread(lambda tx: statfs.statfs(tx, caller))

    # -- non-idempotent writes (retry-safe through idem) -------------------------
    @_rpc
    async def Create(
        self, request: meta_pb2.CreateRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CreateResponse:
        r = request
        caller, parts = _caller(r.header), split_path(r.path)
        check_mode(r.mode)
        _layout_args(r.chunk_size, r.stripe)
        resp = await self._once(
            r.header,
            "Create",
            meta_pb2.CreateResponse,
            lambda tx: create.create(
                tx, caller, parts, mode=r.mode, exclusive=r.exclusive, truncate=r.truncate,
                chunk_size=r.chunk_size, stripe=r.stripe, open_for_write=r.open_for_write,
                client_id=r.header.client_id,
            ),
        )
        if r.open_for_write:  # granted after the reply cache: a retry gets a fresh capability
            rights = access.open_rights(caller, resp.inode, write=True)
            resp.capability.CopyFrom(self._issuer.grant(resp.inode.inode_id, rights))
        return resp

    @_rpc
    async def Mkdir(self, request: meta_pb2.MkdirRequest, context: grpc.aio.ServicerContext) -> meta_pb2.MkdirResponse:
        r = request
        caller, parts = _caller(r.header), split_path(r.path)
        check_mode(r.mode)
        _layout_args(r.chunk_size, r.stripe)
        return await self._once(
            r.header,
            "Mkdir",
            meta_pb2.MkdirResponse,
            lambda tx: mkdir.mkdir(
                tx, caller, parts, mode=r.mode, parents=r.parents, exist_ok=r.exist_ok,
                chunk_size=r.chunk_size, stripe=r.stripe,
            ),
        )

    @_rpc
    async def Remove(
        self, request: meta_pb2.RemoveRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RemoveResponse:
        caller, parts, kind = _caller(request.header), split_path(request.path), request.kind
        return await self._once(
            request.header, "Remove", meta_pb2.RemoveResponse,
            lambda tx: remove.remove(tx, caller, parts, kind=kind),
        )

    @_rpc
    async def Rename(
        self, request: meta_pb2.RenameRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RenameResponse:
        caller = _caller(request.header)
        src, dst = split_path(request.src), split_path(request.dst)
        return await self._once(
            request.header, "Rename", meta_pb2.RenameResponse, lambda tx: rename.rename(tx, caller, src, dst)
        )

    @_rpc
    async def Link(self, request: meta_pb2.LinkRequest, context: grpc.aio.ServicerContext) -> meta_pb2.LinkResponse:
        caller = _caller(request.header)
        src, dst = split_path(request.src), split_path(request.dst)
        return await self._once(
            request.header, "Link", meta_pb2.LinkResponse, lambda tx: link.link(tx, caller, src, dst)
        )

    @_rpc
    async def Symlink(
        self, request: meta_pb2.SymlinkRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.SymlinkResponse:
        caller, parts, target = _caller(request.header), split_path(request.path), request.target
        return await self._once(
            request.header, "Symlink", meta_pb2.SymlinkResponse,
            lambda tx: symlink.symlink(tx, caller, target, parts),
        )

    @_rpc
    async def Truncate(
        self, request: meta_pb2.TruncateRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.TruncateResponse:
        caller, parts, length = _caller(request.header), split_path(request.path), request.length
        resp = await self._once(
            request.header, "Truncate", meta_pb2.TruncateResponse,
            lambda tx: truncate.truncate(tx, caller, parts, length),
        )
        # The client cuts the chunks past the new length next: a write grant for that
        # (granted afresh, also to a replayed retry).
        resp.capability.CopyFrom(self._issuer.grant(resp.inode.inode_id, access.open_rights(caller, resp.inode,
                                                                                             write=True)))
        return resp

    # -- other writes (naturally safe to repeat) ----------------------------------
    @_rpc
    async def SetAttr(
        self, request: meta_pb2.SetAttrRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.SetAttrResponse:
        r = request
        caller, parts = _caller(r.header), split_path(r.path)

        def given(field: str) -> Any:
            return getattr(r, field) if r.HasField(field) else None

        mode = given("mode")
        if mode is not None:
            check_mode(mode)
        uid, gid, atime, mtime = given("uid"), given("gid"), given("atime_ns"), given("mtime_ns")
        return await self._store.write(
            lambda tx: set_attr(
                tx, caller, parts, follow_symlinks=r.follow_symlinks, mode=mode, uid=uid, gid=gid,
                atime_ns=atime, mtime_ns=mtime, times_now=r.times_now,
            )
        )

    @_rpc
    async def Open(self, request: meta_pb2.OpenRequest, context: grpc.aio.ServicerContext) -> meta_pb2.OpenResponse:
        r = request
        caller, parts = _caller(r.header), split_path(r.path)

        def op(tx: MetaTxn) -> meta_pb2.OpenResponse:
            return session.open_file(
                tx, caller, parts, write=r.write, truncate=r.truncate, client_id=r.header.client_id
            )

        write = r.write or r.truncate
        # a read-only open changes nothing: no write transaction
        resp = await self._store.write(op) if write else await self._store.aread(op)
        rights = access.open_rights(caller, resp.inode, write=write)
        resp.capability.CopyFrom(self._issuer.grant(resp.inode.inode_id, rights))
        return resp

    @_rpc
    async def GetCapability(
        self, request: meta_pb2.GetCapabilityRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.GetCapabilityResponse:
        r = request
        caller, inode_id = _caller(r.header), _inode_id(r.inode_id)
        inode, rights = await self._store.aread(lambda tx: access.renew(tx, caller, inode_id, write=r.write))
        return meta_pb2.GetCapabilityResponse(capability=self._issuer.grant(inode.inode_id, rights))

    @_rpc
    async def Close(self, request: meta_pb2.CloseRequest, context: grpc.aio.ServicerContext) -> meta_pb2.CloseResponse:
        r = request
        caller, inode_id = _caller(r.header), _inode_id(r.inode_id)
        return await self._store.write(
            lambda tx: session.close(
                tx, caller, r.session_id, inode_id, length=r.length, wrote=r.wrote,
                truncate_version=r.truncate_version,
            )
        )

    @_rpc
    async def Sync(self, request: meta_pb2.SyncRequest, context: grpc.aio.ServicerContext) -> meta_pb2.SyncResponse:
        r = request
        caller, inode_id = _caller(r.header), _inode_id(r.inode_id)
        return await self._store.write(
            lambda tx: session.sync(
                tx, caller, r.session_id, inode_id, length=r.length, wrote=r.wrote,
                truncate_version=r.truncate_version,
            )
        )

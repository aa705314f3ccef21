"""How an etcd failure becomes an EmberError, and what the client does next.

    Unavailable                      the request surely did not change etcd (retryable)
    └── OutcomeUnknown               a Put/DeleteRange/Txn may or may not have been applied
    InvalidArgument
    └── LimitExceeded                over etcd's --max-txn-ops or --max-request-bytes
    FailedPrecondition               a compacted or future revision
    NotFound                         a lease etcd does not know
    NoSpace                          etcd's backend quota is full (alarm NOSPACE)

An OutcomeUnknown must never be retried blindly: the caller resolves it (the etcd engine
reads back an idempotency record written in the same Txn). `classify` is pure: it maps
a gRPC status and etcd's message, plus whether the call changes state, to a `Verdict`.

etcd's messages are part of its API (etcd's rpctypes); we match them as etcd 3.4 sends
them. Every request carries `hasleader: true`, so a member that lost its leader refuses
at once with "no leader" before it looks at the request, instead of waiting out the
request timeout.
"""

from __future__ import annotations

import dataclasses

import grpc

from emberfs.common.errors import (
    EmberError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NoSpace,
    NotFound,
    Unavailable,
)

__all__ = ["LimitExceeded", "OutcomeUnknown", "Verdict", "classify"]


class OutcomeUnknown(Unavailable):
    """A state-changing request was sent and no answer came back (deadline, connection
    lost, etcd's own proposal timeout): it may have been applied. Not to be retried
    blindly."""

    code = "Unavailable"  # travels as its parent: only the engine acts on the difference
    retryable = False


class RevisionCompacted(FailedPrecondition):
    """A read at a revision etcd has compacted away: a transaction's snapshot is gone
    (the engine runs it again on a new one)."""


class LimitExceeded(InvalidArgument):
    """A request over one of etcd's limits; `limit` names the etcd flag."""

    code = "InvalidArgument"

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a failed attempt means: the error to raise if no retry follows, whether the
    endpoint should be left for the next one, and whether resending is safe."""

    error: EmberError
    failover: bool
    retry: bool


# gRPC's own words for a call that never left this process (no connection was made).
_NOT_SENT = ("failed to connect", "connection refused", "dns resolution", "name resolution", "empty address list")

# etcd refusals of the whole request before it was proposed: nothing was applied.
_REFUSED_BEFORE_PROPOSAL = (
    "etcdserver: no leader",
    "etcdserver: too many requests",
    "etcdserver: not capable",
    "etcdserver: rpc not supported for learner",
    "raft proposal dropped",
)


def _limit_error(details: str) -> EmberError | None:
    if "too many operations in txn request" in details:
        return LimitExceeded(
            "etcd refused the transaction: it holds more operations (compares, or the ops of one branch) "
            "than etcd's --max-txn-ops allows (128 by default)",
            limit="max-txn-ops",
        )
    if "request is too large" in details or "larger than max" in details:
        return LimitExceeded(
            "etcd refused the request: it is larger than etcd's --max-request-bytes (1.5 MiB by default)",
            limit="max-request-bytes",
        )
    return None


def classify(status: grpc.StatusCode, details: str, *, mutating: bool) -> Verdict:
    """The verdict on one failed attempt. `mutating`: the request changes state if applied
    (Put, DeleteRange, a Txn with writes, LeaseGrant); reads and lease renewals are safe
    to resend."""
    text = (details or "").lower()
    limit = _limit_error(text)
    if limit is not None:
        return Verdict(limit, failover=False, retry=False)
    message = f"etcd: {details or status.name}"
    if status == grpc.StatusCode.UNAVAILABLE and any(s in text for s in _NOT_SENT):
        return Verdict(Unavailable(message), failover=True, retry=True)
    if any(s in text for s in _REFUSED_BEFORE_PROPOSAL):
        return Verdict(Unavailable(message), failover=True, retry=True)
    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                  grpc.StatusCode.UNKNOWN):
        # Sent, and no verdict came back: etcd's "request timed out", a member stopping,
        # a connection reset, our deadline. A read is resent elsewhere; a write is not.
        if mutating:
            return Verdict(OutcomeUnknown(f"{message} (the request may have been applied)"), True, False)
        return Verdict(Unavailable(message), failover=True, retry=True)
    if status == grpc.StatusCode.OUT_OF_RANGE:
        gone = RevisionCompacted(message) if "compacted" in text else FailedPrecondition(message)  # future revision
        return Verdict(gone, failover=False, retry=False)
    if status == grpc.StatusCode.NOT_FOUND:
        return Verdict(NotFound(message), failover=False, retry=False)  # lease not found
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Verdict(NoSpace(message), failover=False, retry=False)  # "database space exceeded"
    if "duplicate key given in txn request" in text:
        return Verdict(InvalidArgument(f"{message}: a Txn may write each key once, and a put or delete inside a "
                                       "delete range of the same Txn counts as writing it twice"), False, False)
    if status in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        cls = InvalidArgument if status == grpc.StatusCode.INVALID_ARGUMENT else FailedPrecondition
        return Verdict(cls(message), failover=False, retry=False)
    return Verdict(Internal(message), failover=False, retry=False)

"""etcdkv.errors.classify: what each gRPC status and etcd message means for a read and for
a write — which error, whether to leave the member, whether resending is safe."""

from __future__ import annotations

import grpc
import pytest

from emberfs.common import errors as e
from emberfs.metaserver.etcdkv.errors import LimitExceeded, OutcomeUnknown, RevisionCompacted, classify

S = grpc.StatusCode

# status, details, mutating -> error class, failover, retry
CASES = [
    # never left this process: safe to resend anywhere, read or write
    (S.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
     "Failed to connect to remote host: Connection refused", True, e.Unavailable, True, True),
    (S.UNAVAILABLE, "DNS resolution failed for nohost:1", True, e.Unavailable, True, True),
    # etcd refused before proposing
    (S.UNAVAILABLE, "etcdserver: no leader", True, e.Unavailable, True, True),
    (S.RESOURCE_EXHAUSTED, "etcdserver: too many requests", True, e.Unavailable, True, True),
    (S.UNKNOWN, "raft proposal dropped", True, e.Unavailable, True, True),
    # sent, no verdict: a write's outcome is unknown, a read is resent elsewhere
    (S.UNAVAILABLE, "etcdserver: request timed out", True, OutcomeUnknown, True, False),
    (S.UNAVAILABLE, "etcdserver: request timed out", False, e.Unavailable, True, True),
    (S.UNAVAILABLE, "Socket closed", True, OutcomeUnknown, True, False),
    (S.UNAVAILABLE, "etcdserver: leader changed", False, e.Unavailable, True, True),
    (S.DEADLINE_EXCEEDED, "Deadline Exceeded", True, OutcomeUnknown, True, False),
    (S.DEADLINE_EXCEEDED, "Deadline Exceeded", False, e.Unavailable, True, True),
    (S.CANCELLED, "Cancelled", True, OutcomeUnknown, True, False),
    # etcd's limits
    (S.INVALID_ARGUMENT, "etcdserver: too many operations in txn request", True, LimitExceeded, False, False),
    (S.INVALID_ARGUMENT, "etcdserver: request is too large", True, LimitExceeded, False, False),
    (S.RESOURCE_EXHAUSTED, "Received message larger than max (3000000 vs. 2097152)", True, LimitExceeded, False,
     False),
    # answers about the request itself
    (S.INVALID_ARGUMENT, "etcdserver: key is not provided", True, e.InvalidArgument, False, False),
    (S.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request", True, e.InvalidArgument, False, False),
    (S.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted", False, RevisionCompacted,
     False, False),
    (S.NOT_FOUND, "etcdserver: requested lease not found", True, e.NotFound, False, False),
    (S.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded", True, e.NoSpace, False, False),
    (S.PERMISSION_DENIED, "etcdserver: permission denied", False, e.Internal, False, False),
]


@pytest.mark.parametrize(("status", "details", "mutating", "cls", "failover", "retry"), CASES)
def test_classify(status: grpc.StatusCode, details: str, mutating: bool, cls: type, failover: bool,
                  retry: bool) -> None:
    verdict = classify(status, details, mutating=mutating)
    assert type(verdict.error) is cls, verdict
    assert (verdict.failover, verdict.retry) == (failover, retry)
    assert details in verdict.error.message or isinstance(verdict.error, LimitExceeded)


def test_outcome_unknown_is_unavailable_but_not_retryable() -> None:
    exc = OutcomeUnknown("x")
    assert isinstance(exc, e.Unavailable) and not exc.retryable
    assert e.error_for_code(exc.code) is e.Unavailable  # travels as its parent


@pytest.mark.parametrize(("details", "limit", "words"), [
    ("etcdserver: too many operations in txn request", "max-txn-ops", "--max-txn-ops"),
    ("etcdserver: request is too large", "max-request-bytes", "--max-request-bytes"),
])
def test_limit_messages_name_the_flag(details: str, limit: str, words: str) -> None:
    error = classify(S.INVALID_ARGUMENT, details, mutating=True).error
    assert isinstance(error, LimitExceeded) and error.limit == limit and words in error.message


def test_duplicate_key_explains_the_rule() -> None:
    error = classify(S.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request", mutating=True).error
    assert type(error) is e.InvalidArgument and "delete range of the same Txn" in error.message

"""When to retry a failed call and how long to wait first. Pure: no clock, no I/O.

The transport asks `retry_delay` after every failed attempt. Only errors the error
model marks `retryable` are retried (for the metaserver: UNAVAILABLE and deadline
expiry, both `Unavailable`). A retry always reuses the request's client id and
request id, so the server recognises a non-idempotent operation that already
committed and returns its first reply instead of applying it twice (3FS keeps the
same per-request records for the same reason).

Delays grow exponentially from `base_delay`, are capped at `max_delay`, and lose a
random fraction (up to `jitter`) so that many clients cut off by one server restart
do not all come back in the same instant.
"""

from __future__ import annotations

from dataclasses import dataclass

from emberfs.common.errors import (
    ChecksumMismatch,
    EmberError,
    NotChainHead,
    StaleChainVersion,
    TargetNotServing,
    Unavailable,
)

__all__ = ["ChunkRetry", "RetryPolicy", "chunk_retry", "retry_delay"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # Metaserver calls, the first included; None: retry until the call's deadline, so a
    # metaserver restart (a few seconds) stalls calls instead of failing them. Chunk
    # requests always go on to the deadline.
    max_attempts: int | None = None
    base_delay: float = 0.05  # seconds before the first retry (before jitter)
    max_delay: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.5  # 0: fixed delays; 1: anywhere in (0, delay]
    attempt_timeout: float = 10.0  # one attempt's deadline, within the call's overall timeout

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        if self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive")


def retry_delay(
    policy: RetryPolicy, attempt: int, error: EmberError, remaining: float, rand: float
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    attempt: how many attempts have failed so far (1 after the first).
    remaining: seconds left of the call's overall timeout.
    rand: a uniform sample from [0, 1), supplied by the caller so this stays pure.
    """
    if not error.retryable:
        return None
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return None
    return _backoff(policy, attempt, remaining, rand)


def _backoff(policy: RetryPolicy, attempt: int, remaining: float, rand: float) -> float | None:
    delay = min(policy.max_delay, policy.base_delay * policy.multiplier ** min(attempt - 1, 64))
    delay *= 1.0 - policy.jitter * rand
    # Waiting past the deadline only to fail then is pointless; fail now with the real error.
    if delay >= remaining:
        return None
    return delay


@dataclass(frozen=True, slots=True)
class ChunkRetry:
    """What a chunk request does before its next attempt."""

    delay: float  # seconds to wait
    refresh: bool  # fetch routing first: the chain moved, or a server may be gone
    avoid: bool  # do not send to the target that just failed again


_ROUTING_MOVED = (StaleChainVersion, NotChainHead, TargetNotServing)
_REPLICA_FAILED = (Unavailable, ChecksumMismatch)


def chunk_retry(
    policy: RetryPolicy,
    attempt: int,
    error: EmberError,
    remaining: float,
    rand: float,
    *,
    other_replica: bool,
) -> ChunkRetry | None:
    """The next step of a chunk read or write after a failed attempt; None to give up.

    - The replica failed (UNAVAILABLE, a timeout, bad CRC): avoid it and refresh
      routing; when another replica can take the request (a read with an untried
      serving replica) go there at once, otherwise back off.
    - The chain moved (stale chain version, not the head, target not serving):
      refresh routing and back off.
    - Anything else is an answer, not a fault: give up.

    Chunk requests are bounded by the call's deadline, not by `max_attempts`: a write
    whose successor died must outlast the manager's heartbeat timeout, after which the
    chain is shortened and the retry (same request id) completes on the new chain.
    """
    replica_failed = isinstance(error, _REPLICA_FAILED)
    # A bad CRC is retryable here: another replica, or a later read, may be good.
    if not (replica_failed or error.retryable):
        return None
    delay = _backoff(policy, attempt, remaining, rand)
    if delay is None:
        return None
    if replica_failed and other_replica:
        delay = 0.0
    return ChunkRetry(delay, replica_failed or isinstance(error, _ROUTING_MOVED), replica_failed)

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

from emberfs.common.errors import EmberError

__all__ = ["RetryPolicy", "retry_delay"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6  # including the first
    base_delay: float = 0.05  # seconds before the first retry (before jitter)
    max_delay: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5  # 0: fixed delays; 1: anywhere in (0, delay]
    attempt_timeout: float = 10.0  # one attempt's deadline, within the call's overall timeout

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
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
    if not error.retryable or attempt >= policy.max_attempts:
        return None
    delay = min(policy.max_delay, policy.base_delay * policy.multiplier ** (attempt - 1))
    delay *= 1.0 - policy.jitter * rand
    # Waiting past the deadline only to fail then is pointless; fail now with the real error.
    if delay >= remaining:
        return None
    return delay

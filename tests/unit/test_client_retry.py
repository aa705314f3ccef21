"""The client's retry policy: a pure function, tested with a table."""

import pytest

from emberfs.client import RetryPolicy
from emberfs.client._retry import retry_delay
from emberfs.common import errors as e

P = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=0.5, multiplier=2.0, jitter=0.5)
NO_JITTER = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=0.5, multiplier=2.0, jitter=0.0)

CASES = [
    # policy, attempt that failed, error, seconds remaining, rand, expected delay (None: give up)
    (NO_JITTER, 1, e.Unavailable(), 10.0, 0.7, 0.1),
    (NO_JITTER, 2, e.Unavailable(), 10.0, 0.7, 0.2),
    (NO_JITTER, 3, e.Unavailable(), 10.0, 0.7, 0.4),
    (NO_JITTER, 4, e.Unavailable(), 10.0, 0.7, 0.5),  # capped at max_delay
    (NO_JITTER, 5, e.Unavailable(), 10.0, 0.7, None),  # max_attempts reached
    (P, 1, e.Unavailable(), 10.0, 0.0, 0.1),  # rand 0: the full delay
    (P, 1, e.Unavailable(), 10.0, 0.5, 0.075),  # jitter takes away up to half
    (P, 4, e.Unavailable(), 10.0, 0.999999, 0.25 + 0.0000005),  # capped, then jittered
    (P, 1, e.NotFound(), 10.0, 0.0, None),  # not retryable: the answer is final
    (P, 1, e.AlreadyExists(), 10.0, 0.0, None),
    (P, 1, e.InvalidArgument(), 10.0, 0.0, None),
    (P, 1, e.PermissionDenied(), 10.0, 0.0, None),
    (P, 1, e.Internal(), 10.0, 0.0, None),
    (P, 1, e.StaleChainVersion(), 10.0, 0.0, 0.1),  # retryable storage error
    (P, 2, e.Unavailable(), 0.15, 0.0, None),  # the wait would outlast the deadline
    (P, 2, e.Unavailable(), 0.25, 0.0, 0.2),
    (P, 1, e.Unavailable(), 0.0, 0.0, None),
    (RetryPolicy(max_attempts=1), 1, e.Unavailable(), 10.0, 0.0, None),  # no retries at all
]


@pytest.mark.parametrize("policy,attempt,error,remaining,rand,expected", CASES)
def test_retry_delay(policy, attempt, error, remaining, rand, expected) -> None:
    got = retry_delay(policy, attempt, error, remaining, rand)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_delays_never_exceed_cap_or_go_negative() -> None:
    for attempt in range(1, 5):
        for rand in (0.0, 0.3, 0.99):
            d = retry_delay(P, attempt, e.Unavailable(), 100.0, rand)
            assert d is not None and 0 < d <= P.max_delay


@pytest.mark.parametrize(
    "kwargs",
    [dict(max_attempts=0), dict(base_delay=3.0, max_delay=1.0), dict(multiplier=0.5), dict(jitter=1.5), dict(attempt_timeout=0)],
)
def test_bad_policies_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)

"""The client's retry policies (metaserver calls and chunk requests): pure functions,
tested with tables."""

import pytest

from emberfs.client import RetryPolicy
from emberfs.client._retry import ChunkRetry, chunk_retry, retry_delay
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
    # The default: no attempt cap, only the deadline (a metaserver restart outlasts 6 tries).
    (RetryPolicy(jitter=0.0), 40, e.Unavailable(), 10.0, 0.0, 1.0),
    (RetryPolicy(jitter=0.0), 40, e.Unavailable(), 0.9, 0.0, None),
    (RetryPolicy(jitter=0.0), 40, e.NotFound(), 10.0, 0.0, None),
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
    [
        dict(max_attempts=0),
        dict(base_delay=3.0, max_delay=1.0),
        dict(multiplier=0.5),
        dict(jitter=1.5),
        dict(attempt_timeout=0),
    ],
)
def test_bad_policies_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


CHUNK_CASES = [
    # error, attempt, other replica free, expected (delay, refresh, avoid) or None
    (e.Unavailable(), 1, True, (0.0, True, True)),  # a read moves to another replica at once
    (e.Unavailable(), 1, False, (0.1, True, True)),  # no replica left (or a write): back off
    (e.ChecksumMismatch(), 1, True, (0.0, True, True)),  # bad bytes: another replica
    (e.ChecksumMismatch(), 2, False, (0.2, True, True)),
    (e.StaleChainVersion(), 1, True, (0.1, True, False)),  # the chain moved: refresh, back off
    (e.NotChainHead(), 3, False, (0.4, True, False)),
    (e.TargetNotServing(), 1, False, (0.1, True, False)),
    (e.ChunkNotCommitted(), 1, False, (0.1, False, False)),
    (e.Unavailable(), 9, True, (0.0, True, True)),  # no attempt cap: the deadline bounds it
    (e.StaleChainVersion(), 9, False, (0.5, True, False)),  # backoff capped at max_delay
    (e.InvalidArgument(), 1, True, None),  # an answer, not a fault
    (e.NoSpace(), 1, True, None),
    (e.NotFound(), 1, True, None),
]


@pytest.mark.parametrize("error,attempt,other,expected", CHUNK_CASES)
def test_chunk_retry(error, attempt, other, expected) -> None:
    step = chunk_retry(NO_JITTER, attempt, error, 10.0, 0.0, other_replica=other)
    assert step == (None if expected is None else ChunkRetry(*expected))


def test_chunk_retry_gives_up_when_the_wait_outlasts_the_deadline() -> None:
    assert chunk_retry(NO_JITTER, 2, e.StaleChainVersion(), 0.1, 0.0, other_replica=False) is None

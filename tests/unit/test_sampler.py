"""EpochSampler and its O(1)-memory permutation (client/_sampler.py)."""

from __future__ import annotations

import pytest

from emberfs.client._sampler import EpochSampler, Permutation


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 16, 17, 1000, 4097])
def test_permutation_is_a_bijection(n: int) -> None:
    perm = Permutation(n, key=42)
    assert sorted(perm[i] for i in range(n)) == list(range(n))


def test_permutation_depends_on_its_key_and_is_well_mixed() -> None:
    a = [Permutation(10_000, 1)[i] for i in range(10_000)]
    b = [Permutation(10_000, 2)[i] for i in range(10_000)]
    assert a != b and a == [Permutation(10_000, 1)[i] for i in range(10_000)]
    fixed = sum(1 for i, x in enumerate(a) if i == x)
    assert fixed < 20  # about 1 expected for a random permutation
    with pytest.raises(IndexError):
        Permutation(3, 1)[3]


@pytest.mark.parametrize(("n", "world"), [(100, 1), (103, 4), (5, 8)])
def test_ranks_get_equal_disjoint_shares(n: int, world: int) -> None:
    shares = [list(EpochSampler(n, seed=1, rank=r, world_size=world)) for r in range(world)]
    assert {len(s) for s in shares} == {n // world}
    flat = [i for s in shares for i in s]
    assert len(flat) == len(set(flat)) == n - n % world


def test_epochs_differ_and_unshuffled_is_in_order() -> None:
    s = EpochSampler(50, seed=3)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first and sorted(first) == list(range(50))
    assert list(EpochSampler(10, shuffle=False, rank=1, world_size=2)) == [1, 3, 5, 7, 9]


def test_resume_same_and_other_world_size() -> None:
    n = 1000
    whole = [list(EpochSampler(n, seed=5, rank=r, world_size=4)) for r in range(4)]
    states, done = [], []
    for r in range(4):
        s = EpochSampler(n, seed=5, rank=r, world_size=4)
        it = iter(s)
        done += [next(it) for _ in range(37)]
        states.append(s.state_dict())
    same = EpochSampler(n, seed=5, rank=2, world_size=4)
    same.load_state_dict(states[2])
    assert list(same) == whole[2][37:]
    rest = []
    for r in range(3):
        s = EpochSampler(n, seed=5, rank=r, world_size=3)
        s.load_state_dict(states[0])
        rest += list(s)
    assert not set(rest) & set(done) and len(rest) == len(set(rest))
    assert len(done) + len(rest) == n - (n - 4 * 37) % 3
    with pytest.raises(ValueError, match="seed"):
        EpochSampler(n, seed=6).load_state_dict(states[0])

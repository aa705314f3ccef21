"""A resumable, rank-aware sampler for the map-style datasets (`RecordDataset`, `FileDataset`).

The epoch's order is one permutation of all sample indices, seeded by (seed, epoch) and
computed index by index (a Feistel network over the next power of four, walking until it
lands inside the dataset), so it needs no list of 100M indices. Rank r of world_size takes
positions r, r + world_size, ... of it: every rank the same count, the fewer than world_size
left over at the end dropped; the order does not depend on world_size.

Resumable: `state_dict()` is the epoch and how many indices this rank has handed out.
Because ranks advance in lockstep (each takes every world_size-th position), the positions
all ranks have used are a prefix of the permutation, so a state from another world size
resumes too: the new ranks split the rest. torchdata's StatefulDataLoader calls both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["EpochSampler", "Permutation"]

_MASK64 = (1 << 64) - 1
_ROUNDS = 4


def _mix(x: int) -> int:
    """A 64-bit integer hash (the splitmix64 finaliser): cheap, and every output bit depends on every input bit."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


class Permutation:
    """A seeded bijection of range(n), O(1) memory: `perm[i]` for 0 <= i < n."""

    def __init__(self, n: int, key: int) -> None:
        if n < 0:
            raise ValueError("n must not be negative")
        self.n = n
        bits = max(2, (max(n - 1, 1)).bit_length())
        self.half = (bits + 1) // 2
        self.low = (1 << self.half) - 1
        self.keys = [_mix(key * 0x9E3779B97F4A7C15 + r & _MASK64) for r in range(_ROUNDS)]

    def _once(self, x: int) -> int:
        left, right = x >> self.half, x & self.low
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & self.low)
        return (left << self.half) | right

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"{i} of a permutation of {self.n}")
        x = self._once(i)
        while x >= self.n:  # the domain is below 4n: a few steps on average
            x = self._once(x)
        return x

    def __len__(self) -> int:
        return self.n


class EpochSampler:
    """Indices of a map-style dataset for one rank, per epoch; see the module docstring.

        sampler = EpochSampler(len(ds), shuffle=True, seed=0, rank=rank, world_size=world)
        loader = StatefulDataLoader(ds, batch_size=64, sampler=sampler, num_workers=2)
        sampler.set_epoch(e)  # before each epoch
    """

    def __init__(self, size: int | Any, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world_size {world_size}: need 0 <= rank < world_size")
        self.size = size if isinstance(size, int) else len(size)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.epoch = 0
        self.yielded = 0  # indices handed out this epoch
        self._start = 0  # positions every rank had used when the epoch resumed
        self._resumed_world = world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.yielded, self._start = epoch, 0, 0

    def __len__(self) -> int:
        return (self.size - self._start) // self.world_size

    def _position(self, i: int) -> int:
        return self._start + i * self.world_size + self.rank

    def __iter__(self) -> Iterator[int]:
        perm = Permutation(self.size, _mix(self.seed * 1_000_003 + self.epoch)) if self.shuffle else None
        n = len(self)
        while self.yielded < n:
            p = self._position(self.yielded)
            self.yielded += 1
            yield perm[p] if perm is not None else p
        # the epoch is done: a new iter() starts it again (set_epoch for the next one)
        self.yielded, self._start = 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"format": "emberfs.sampler/1", "size": self.size, "shuffle": self.shuffle, "seed": self.seed,
                "epoch": self.epoch, "world_size": self.world_size, "start": self._start, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != "emberfs.sampler/1":
            raise ValueError("not an EmberFS sampler state")
        for key in ("size", "shuffle", "seed"):
            if state[key] != getattr(self, key):
                raise ValueError(f"the state's {key} is {state[key]!r}, this sampler's {getattr(self, key)!r}")
        self.epoch = state["epoch"]
        used = state["start"] + state["yielded"] * state["world_size"]  # the same on every old rank
        if state["world_size"] == self.world_size:
            self._start, self.yielded = state["start"], state["yielded"]
        else:
            self._start, self.yielded = used, 0
